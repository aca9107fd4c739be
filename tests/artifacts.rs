//! `artifacts::fetch` end to end through `cai run`, against a real loopback HTTP server
//! (python3's `http.server` on 127.0.0.1): a verified download lands in the cache and is reused,
//! every refusal and failure leaves the cache empty and says what to do, and a dry run neither
//! touches the disk nor sends a request. Truncated bodies and stalled servers need a server that
//! misbehaves on purpose and short timeouts; they are unit tests in `src/host/artifacts.rs`.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::{HttpServer, TestHost};

const DEB: &[u8] = b"!<arch>\nnot really a package, but bytes with a known sha256\n";

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One artifact map as the update flow passes it; `None` fields are `()`.
fn entry(
    name: &str,
    url: &str,
    sha256: Option<&str>,
    sha256_url: Option<&str>,
    key: &str,
) -> String {
    let text = |v: Option<&str>| v.map_or_else(|| "()".to_string(), |v| format!("{v:?}"));
    format!(
        "#{{name: {name:?}, url: {url:?}, sha256: {}, sha256_url: {}, config_key: {key:?}}}",
        text(sha256),
        text(sha256_url)
    )
}

/// A script that fetches each entry in turn and prints what came back.
fn fetch_script(host: &TestHost, entries: &[String]) -> PathBuf {
    let mut text = String::from("//! version: 1.0.0\n//! api: 1\n");
    for entry in entries {
        text.push_str(&format!(
            "let f = artifacts::fetch({entry});\nprint(`fetched ${{f.path}} ${{f.sha256}} ${{f.bytes}} ${{f.reused}}`);\n"
        ));
    }
    host.script("fetch.rhai", &text)
}

fn run(host: &TestHost, script: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.push(script.to_str().unwrap());
    host.run(&args)
}

fn cache(host: &TestHost) -> PathBuf {
    host.root().join("var/cache/containai")
}

/// Everything in the cache directory, temporary files included.
fn cache_names(host: &TestHost) -> Vec<String> {
    match std::fs::read_dir(cache(host)) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_fetch_lands_verified_in_the_cache_and_the_second_one_reuses_it() {
    support::require_root();
    let host = TestHost::new();
    let server = HttpServer::start();
    let url = server.put("sysbox.deb", DEB);
    let one = entry("sysbox.deb", &url, Some(&sha(DEB)), None, "sysbox_sha256");
    let script = fetch_script(&host, &[one.clone(), one]);
    // A umask that would hide the cache from everyone else must not decide its modes.
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 077; exec \"$@\"")
        .arg("sh")
        .arg(support::cai_bin())
        .arg("--root")
        .arg(host.root())
        .arg("run")
        .arg(&script)
        .env("HOME", host.home.path())
        .env("PATH", host.fakes.path_env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (code, stdout, stderr) = support::decode(out);
    assert_eq!(code, 0, "{stderr}");
    let fetched = format!(
        "fetched /var/cache/containai/sysbox.deb {} {}",
        sha(DEB),
        DEB.len()
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [format!("{fetched} false"), format!("{fetched} true")],
        "{stderr}"
    );
    let file = cache(&host).join("sysbox.deb");
    assert_eq!(std::fs::read(&file).unwrap(), DEB);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o644, 0, 0)
    );
    let dir = std::fs::metadata(cache(&host)).unwrap();
    assert_eq!((dir.mode() & 0o7777, dir.uid()), (0o755, 0));
    assert_eq!(cache_names(&host), ["sysbox.deb"]);
    assert_eq!(
        server.requests(),
        ["GET /sysbox.deb 200"],
        "the second fetch must reuse the cache"
    );
}

#[test]
fn a_wrong_sha256_fails_and_leaves_nothing_in_the_cache() {
    let host = TestHost::new();
    let server = HttpServer::start();
    let url = server.put("sysbox.deb", DEB);
    let expected = sha(b"other bytes");
    let script = fetch_script(
        &host,
        &[entry(
            "sysbox.deb",
            &url,
            Some(&expected),
            None,
            "sysbox_sha256",
        )],
    );
    let (code, stdout, stderr) = run(&host, &script, &[]);
    assert_eq!(code, 1, "{stdout}");
    let mismatch = format!(
        "sha256 mismatch for sysbox.deb: expected {expected}, got {}",
        sha(DEB)
    );
    assert!(stderr.contains(&mismatch), "{stderr}");
    assert!(stderr.contains("\nhelp: "), "{stderr}");
    assert!(!stdout.contains("fetched"), "{stdout}");
    assert!(cache_names(&host).is_empty(), "{:?}", cache_names(&host));
}

#[test]
fn a_404_is_one_line_naming_the_url_and_status_and_is_not_retried() {
    let host = TestHost::new();
    let server = HttpServer::start();
    let url = server.url("sysbox-missing.deb");
    let script = fetch_script(
        &host,
        &[entry(
            "sysbox.deb",
            &url,
            Some(&sha(DEB)),
            None,
            "sysbox_sha256",
        )],
    );
    let (code, _, stderr) = run(&host, &script, &[]);
    assert_eq!(code, 1, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(
        line.ends_with(&format!(
            "cannot fetch {url}: the server answered 404 Not Found"
        )),
        "{line}"
    );
    assert_eq!(server.requests(), ["GET /sysbox-missing.deb 404"]);
    assert!(cache_names(&host).is_empty());
}

#[test]
fn a_refused_connection_fails_clearly_after_the_retries() {
    let host = TestHost::new();
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/sysbox.deb");
    let script = fetch_script(
        &host,
        &[entry(
            "sysbox.deb",
            &url,
            Some(&sha(DEB)),
            None,
            "sysbox_sha256",
        )],
    );
    let started = Instant::now();
    let (code, _, stderr) = run(&host, &script, &[]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot fetch {url} after 3 attempts: connection refused"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("\nhelp: check that this machine reaches the server"),
        "{stderr}"
    );
    // Three immediate refusals and the backoff between them (1 s, then 2 s).
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(cache_names(&host).is_empty());
}

#[test]
fn a_file_url_is_read_from_under_the_root() {
    let host = TestHost::new();
    std::fs::create_dir_all(host.root().join("srv/mirror")).unwrap();
    std::fs::write(host.root().join("srv/mirror/docker-27.1.1.tgz"), DEB).unwrap();
    let script = fetch_script(
        &host,
        &[entry(
            "docker-27.1.1.tgz",
            "file:///srv/mirror/docker-27.1.1.tgz",
            Some(&sha(DEB)),
            None,
            "dockerd_sha256",
        )],
    );
    let (code, stdout, stderr) = run(&host, &script, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("{} {} false", sha(DEB), DEB.len())),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(cache(&host).join("docker-27.1.1.tgz")).unwrap(),
        DEB
    );
}

#[test]
fn a_sha256_side_file_supplies_the_checksum() {
    let host = TestHost::new();
    let server = HttpServer::start();
    let name = "sysbox-ce_0.6.7+containai.20260127.linux_amd64.deb";
    let url = server.put(name, DEB);
    // A checksum file from this machine (a local mirror) verifies a download over plain http:
    // it does not travel over the channel it protects.
    let mirror = host.root().join("srv/mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::write(
        mirror.join(format!("{name}.sha256")),
        format!("{}  {name}\n", sha(DEB)),
    )
    .unwrap();
    let side = format!("file:///srv/mirror/{name}.sha256");
    let script = fetch_script(
        &host,
        &[entry(name, &url, None, Some(&side), "sysbox_sha256")],
    );
    let (code, stdout, stderr) = run(&host, &script, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("{} {} false", sha(DEB), DEB.len())),
        "{stdout}"
    );
    assert_eq!(std::fs::read(cache(&host).join(name)).unwrap(), DEB);
    // python logs the path as requested (`+` kept).
    assert_eq!(server.requests(), [format!("GET /{name} 200")]);

    // A side file that does not hold a sha256 is refused before the artifact is requested.
    let host = TestHost::new();
    let mirror = host.root().join("srv/mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::write(mirror.join("bad.sha256"), "<html>moved</html>\n").unwrap();
    let bad = "file:///srv/mirror/bad.sha256";
    let refused = fetch_script(
        &host,
        &[entry("x.deb", &url, None, Some(bad), "sysbox_sha256")],
    );
    let (code, _, stderr) = run(&host, &refused, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot use the checksum file {bad}: its first field is not a sha256"
        )),
        "{stderr}"
    );
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}

/// P67: a checksum file fetched over plain http proves nothing about a file from the same
/// server (whoever can change one can change the other): it is refused before any request, with
/// the key that pins the sha256 instead; a pinned sha256 or a local checksum file still works.
#[test]
fn p67_a_checksum_file_over_plain_http_is_refused_before_any_request() {
    let host = TestHost::new();
    let server = HttpServer::start();
    let name = "sysbox-ce_0.6.7+containai.20260127.linux_amd64.deb";
    let url = server.put(name, DEB);
    let side = server.put(
        &format!("{name}.sha256"),
        format!("{}  {name}\n", sha(DEB)).as_bytes(),
    );
    for key in ["sysbox_sha256", "CAI_SYSBOX_SHA256"] {
        let script = fetch_script(&host, &[entry(name, &url, None, Some(&side), key)]);
        for extra in [&[][..], &["--dry-run"][..]] {
            let (code, _, stderr) = run(&host, &script, extra);
            assert_eq!(code, 1, "{stderr}");
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(errors.len(), 1, "{stderr}");
            assert!(
                errors[0].contains(&format!(
                    "refusing to fetch {name} from {url}: a download over plain http needs a pinned sha256"
                )),
                "{stderr}"
            );
            assert!(stderr.contains(&format!("help: set {key}")), "{stderr}");
        }
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(!cache(&host).exists());
}

/// P68: a body larger than `download_max_mb` is refused on its announced length, before a byte
/// of it is read, and never retried.
#[test]
fn p68_a_body_over_download_max_mb_is_refused_on_its_announced_length() {
    let host = TestHost::new();
    std::fs::write(
        host.root().join("etc/containai/config.toml"),
        "download_max_mb = 1\n",
    )
    .unwrap();
    let server = HttpServer::start();
    let body = vec![1u8; (1 << 20) + 1];
    let url = server.put("big.deb", &body);
    let script = fetch_script(
        &host,
        &[entry(
            "big.deb",
            &url,
            Some(&sha(&body)),
            None,
            "sysbox_sha256",
        )],
    );
    let (code, _, stderr) = run(&host, &script, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refusing to fetch {url}: the server announces 1048577 bytes, more than download_max_mb = 1 (1048576 bytes)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: raise download_max_mb in /etc/containai/config.toml"),
        "{stderr}"
    );
    // One request, not retried (python logs the reset of the connection too).
    let gets = server.requests();
    let gets: Vec<&String> = gets.iter().filter(|l| l.starts_with("GET ")).collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert!(cache_names(&host).is_empty(), "{:?}", cache_names(&host));
}

/// Unmounts a test mount however the test ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// P68: the free space in the cache is checked before the body is fetched: a file that would not
/// fit is refused with the space there is, and nothing is left behind.
#[test]
fn p68_a_file_that_does_not_fit_in_the_cache_is_refused_before_it_is_fetched() {
    support::require_root();
    let host = TestHost::new();
    let dir = cache(&host);
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0755", "cai-test-cache"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs");
    let _mounted = Mounted(dir.clone());
    let server = HttpServer::start();
    let body = vec![2u8; 2 << 20];
    let url = server.put("big.deb", &body);
    let script = fetch_script(
        &host,
        &[entry(
            "big.deb",
            &url,
            Some(&sha(&body)),
            None,
            "sysbox_sha256",
        )],
    );
    let (code, _, stderr) = run(&host, &script, &[]);
    assert_eq!(code, 1, "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!(
            "cannot fetch {url}: it is 2097152 bytes and {} has",
            dir.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("help: free space in"), "{stderr}");
    // One request, not retried (python logs the reset of the connection too).
    let gets = server.requests();
    let gets: Vec<&String> = gets.iter().filter(|l| l.starts_with("GET ")).collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert!(cache_names(&host).is_empty(), "{:?}", cache_names(&host));
}

#[test]
fn without_a_sha256_or_side_file_the_fetch_is_refused_naming_the_config_key() {
    let host = TestHost::new();
    let server = HttpServer::start();
    let url = server.put("docker-27.1.1.tgz", DEB);
    let script = fetch_script(
        &host,
        &[entry(
            "docker-27.1.1.tgz",
            &url,
            Some(""),
            None,
            "dockerd_sha256",
        )],
    );
    let (code, _, stderr) = run(&host, &script, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refusing to fetch docker-27.1.1.tgz from {url}: there is no sha256 to verify it against"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: set dockerd_sha256 in /etc/containai/config.toml"),
        "{stderr}"
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(!cache(&host).exists());
}

#[test]
fn a_name_that_is_not_a_plain_file_name_is_refused() {
    let host = TestHost::new();
    let server = HttpServer::start();
    let url = server.put("x.deb", DEB);
    for name in ["../x", "a/b.deb", ".."] {
        let script = fetch_script(
            &host,
            &[entry(name, &url, Some(&sha(DEB)), None, "sysbox_sha256")],
        );
        let (code, _, stderr) = run(&host, &script, &[]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("refusing artifact name {name:?}")),
            "{stderr}"
        );
        // Refused in a dry run too: the plan never shows a fetch a live run would refuse.
        let (code, _, stderr) = run(&host, &script, &["--dry-run"]);
        assert_eq!(code, 1, "{stderr}");
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(!host.root().join("var/cache").exists());
    assert!(!host.root().join("x").exists());
}

#[test]
fn a_dry_run_plans_the_fetch_without_a_request_or_a_change() {
    let host = TestHost::new();
    let server = HttpServer::start();
    let url = server.put("sysbox.deb", DEB);
    // Over plain http only a local checksum file may vouch for a download [P67].
    let side = "file:///srv/mirror/docker.tgz.sha256";
    let docker = server.put("docker.tgz", DEB);
    let script = fetch_script(
        &host,
        &[
            entry("sysbox.deb", &url, Some(&sha(DEB)), None, "sysbox_sha256"),
            entry("docker.tgz", &docker, None, Some(side), "dockerd_sha256"),
        ],
    );
    let before = host.snapshot_files();
    let (code, stdout, stderr) = run(&host, &script, &["--dry-run", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(host.snapshot_files(), before, "a dry run changed files");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    // The script sees the prediction (print goes to stderr under --json).
    assert!(
        stderr.contains(&format!(
            "fetched /var/cache/containai/sysbox.deb {} 0 false",
            sha(DEB)
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("fetched /var/cache/containai/docker.tgz  0 false"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let plan = doc["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert_eq!(plan[0]["kind"], "artifacts.fetch");
    assert_eq!(plan[0]["target"], url.as_str());
    assert_eq!(plan[0]["details"]["name"], "sysbox.deb");
    assert_eq!(plan[0]["details"]["sha256"], sha(DEB).as_str());
    let into = host.root().join("var/cache/containai/sysbox.deb");
    assert_eq!(plan[0]["details"]["into"], into.to_str().unwrap());
    assert_eq!(
        plan[1]["details"]["sha256"],
        format!("from {side}").as_str()
    );
}
