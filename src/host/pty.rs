//! A local pseudo-terminal that stands in for the operator's terminal when `cai shell` is fed by
//! a pipe [P69]. `ssh` reads the terminal modes of its stdin and asks the container's PTY for the
//! same ones when it allocates it, before the remote shell starts and before any input arrives;
//! from a pipe it sends modes with every special character undefined and canonical mode off, so
//! no character can ever mean "end of file". Given this terminal (the kernel's defaults:
//! canonical mode, echo, Ctrl-D as `VEOF`) instead, the remote line discipline turns a Ctrl-D at
//! the start of a line into an end of file for whoever reads it.
//!
//! This module only opens the pair and waits for `ssh` to take it over; it never reads or
//! changes what passes through.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::{LocalModes, Winsize};

/// The two ends: `ssh` gets the terminal, `cai` writes the operator's input into the controller.
pub struct LocalPty {
    /// The side `cai` writes to: what the operator would type.
    pub controller: OwnedFd,
    /// The terminal, for `ssh`'s stdin.
    pub terminal: OwnedFd,
}

#[cfg(target_os = "linux")]
fn open_controller() -> std::io::Result<OwnedFd> {
    Ok(rustix::pty::openpt(
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )?)
}

/// macOS's `posix_openpt` takes no close-on-exec flag: it is set right after, before any child
/// is spawned by this thread.
#[cfg(not(target_os = "linux"))]
fn open_controller() -> std::io::Result<OwnedFd> {
    let fd = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(fd)
}

/// Opens a pair with the kernel's default modes and an 80x24 window (what a remote program
/// sees as its size; a pipe has none).
pub fn open() -> std::io::Result<LocalPty> {
    let controller = open_controller()?;
    rustix::pty::grantpt(&controller)?;
    rustix::pty::unlockpt(&controller)?;
    let name = rustix::pty::ptsname(&controller, Vec::new())?;
    let terminal = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::termios::tcsetwinsize(
        &terminal,
        Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(LocalPty {
        controller,
        terminal,
    })
}

/// Waits until the program holding the terminal switched it out of canonical mode, as `ssh`
/// does once the remote PTY exists (it read the modes before). Input written earlier would be
/// edited and echoed by this terminal's own line discipline. False when that did not happen
/// within `limit`.
pub fn wait_taken_over(controller: &OwnedFd, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match rustix::termios::tcgetattr(controller) {
            Ok(modes) if !modes.local_modes.contains(LocalModes::ICANON) => return true,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_terminal_is_canonical_with_ctrl_d_as_end_of_file() {
        let pty = open().unwrap();
        let modes = rustix::termios::tcgetattr(&pty.terminal).unwrap();
        assert!(modes.local_modes.contains(LocalModes::ICANON));
        assert_eq!(
            modes.special_codes[rustix::termios::SpecialCodeIndex::VEOF],
            crate::plan::shell::VEOF
        );
        assert!(!wait_taken_over(&pty.controller, Duration::from_millis(30)));
        let mut raw = modes.clone();
        raw.local_modes.remove(LocalModes::ICANON);
        rustix::termios::tcsetattr(&pty.terminal, rustix::termios::OptionalActions::Now, &raw)
            .unwrap();
        assert!(wait_taken_over(&pty.controller, Duration::from_secs(1)));
    }
}
