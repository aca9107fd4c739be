//! The primitive API version this `cai` provides. Scripts declare the version they need
//! (`//! api: 1`); the primitives themselves are documented by their registrations in
//! [`super::bind`], which `cai scripts api` lists.

/// Minor versions add primitives; a major version would change or remove one. 1.1 replaced
/// `units::write(name, text)` by `units::install(name)` without a major bump: the project had no
/// external users yet, and a script that called `units::write` fails at the call, not silently.
/// 1.2 added `release::target()` and `sysbox::decide(installed, target)`; 1.4 added
/// `lima::status()` and `lima::arch()`; 1.5 added `dockerd::config_read()`, `config_render()`,
/// `dockerd::config_diff()` and `dockerd::install_config()`; 1.6 added `ssh::exec(container,
/// argv, env)` and `ssh::spawn_detached(container, argv)`; 1.7 added `volumes::managed()`,
/// `volumes::scan(name[, limit])`, `volumes::protected_hardlinks()` and
/// `volumes::chown(name, from, to)`; 1.8 added `containers::list(all)`,
/// `containers::stopped_at_engine_start()`, `containers::user_ids(name, user)`,
/// `containers::root_taint(name)`, `units::state(name)`, `units::stop(name)`,
/// `units::enable(name)`, `packages::check_deb(path, expected)`, `dockerd::config_state()`,
/// `dockerd::check_bundle(bundle[, version])`, `sysbox::status()`, `update::verify()`,
/// `prompt::confirm_stop(containers)`, `run::refused()` and `run::updates_available()`, and made
/// the update's safety rules stricter without changing a signature (the record only grows,
/// `containers::stop` under the lock takes recorded full IDs, `update::clear` needs verified
/// installs, `prompt::confirm` no longer consents to stopping containers); 1.9 added
/// `run::refuse(message, help)` and `run::refuse(#{ message, help, containers, code })`; 1.10
/// added `update::health()`, `update::rollback_plan()`, `update::keep()`,
/// `update::rollback_set()`, `update::rollback(reason)` and `update::prune()`, and made
/// `update::clear()` wait for the health gate whenever the run installed something or restarted
/// the engine.
pub const API_VERSION: semver::Version = semver::Version::new(1, 10, 0);
