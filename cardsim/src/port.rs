//! The simulator's transports: a TCP listener with one host connection at a time, or a
//! pseudo-terminal whose slave the host opens like a serial device.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::CardSimError;

/// The host side of the data path.
pub(crate) enum Data {
    Tcp(TcpStream),
    Pty(File),
}

impl Data {
    pub(crate) fn fd(&self) -> RawFd {
        match self {
            Data::Tcp(s) => s.as_raw_fd(),
            Data::Pty(f) => f.as_raw_fd(),
        }
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Data::Tcp(s) => s.read(buf),
            Data::Pty(f) => f.read(buf),
        }
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Data::Tcp(s) => s.write(buf),
            Data::Pty(f) => f.write(buf),
        }
    }
}

/// A listening TCP socket or a pseudo-terminal.
pub(crate) struct Port {
    pub(crate) listener: Option<TcpListener>,
    pub(crate) data: Option<Data>,
    /// Our own open slave of the pty: the master never sees a hang-up when the host closes it.
    _slave: Option<File>,
    pub(crate) endpoint: String,
}

impl Port {
    pub(crate) fn tcp(addr: SocketAddr) -> Result<Self, CardSimError> {
        let err = |source| CardSimError::Listen {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let endpoint = listener.local_addr().map_err(err)?.to_string();
        Ok(Self {
            listener: Some(listener),
            data: None,
            _slave: None,
            endpoint,
        })
    }

    pub(crate) fn pty() -> Result<Self, CardSimError> {
        let (master, slave) = open_pty()?;
        let endpoint = slave_path(&master)?;
        make_raw(&slave)?;
        set_flags(&master, true)?;
        set_flags(&slave, false)?;
        Ok(Self {
            listener: None,
            data: Some(Data::Pty(File::from(master))),
            _slave: Some(File::from(slave)),
            endpoint,
        })
    }

    /// Accepts a pending connection (TCP): the new stream, non-blocking with `TCP_NODELAY`, and
    /// the peer address.
    pub(crate) fn accept(&mut self) -> Option<(Data, String)> {
        let listener = self.listener.as_ref()?;
        let (stream, peer) = listener.accept().ok()?;
        if stream.set_nonblocking(true).is_err() {
            return None;
        }
        let _ = stream.set_nodelay(true);
        Some((Data::Tcp(stream), peer.to_string()))
    }
}

fn pty_err(step: &'static str) -> CardSimError {
    CardSimError::Pty {
        step,
        source: io::Error::last_os_error(),
    }
}

fn open_pty() -> Result<(OwnedFd, OwnedFd), CardSimError> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two fds into the given ints; name, termios and winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(pty_err("openpty"));
    }
    // SAFETY: openpty succeeded: both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) })
}

fn slave_path(master: &OwnedFd) -> Result<String, CardSimError> {
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: buf is writable for its length; ptsname_r NUL-terminates on success.
    let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return Err(CardSimError::Pty {
            step: "ptsname_r",
            source: io::Error::from_raw_os_error(rc),
        });
    }
    // SAFETY: NUL-terminated by ptsname_r within buf.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// Raw mode on the line at once, so nothing the card sends is echoed or translated.
fn make_raw(slave: &OwnedFd) -> Result<(), CardSimError> {
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer.
    if unsafe { libc::tcgetattr(slave.as_raw_fd(), &mut t) } != 0 {
        return Err(pty_err("tcgetattr"));
    }
    // SAFETY: valid pointer to an initialised termios.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: valid fd and pointer.
    if unsafe { libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t) } != 0 {
        return Err(pty_err("tcsetattr"));
    }
    Ok(())
}

/// Close-on-exec, and non-blocking when asked.
fn set_flags(fd: &OwnedFd, nonblocking: bool) -> Result<(), CardSimError> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a valid fd with integer arguments.
    unsafe {
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            return Err(pty_err("fcntl(FD_CLOEXEC)"));
        }
        if nonblocking {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) != 0 {
                return Err(pty_err("fcntl(O_NONBLOCK)"));
            }
        }
    }
    Ok(())
}

/// Waits until one of `fds` is ready or `timeout_ns` passed (nanosecond precision, `ppoll`).
/// Returns `true` when something is ready.
pub(crate) fn wait(fds: &mut [libc::pollfd], timeout_ns: u64) -> bool {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout_ns / 1_000_000_000).unwrap_or(libc::time_t::MAX),
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: fds is a valid slice of pollfd; ts a valid timespec; no signal mask change.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    rc > 0
}

/// Asks for 1 ns timer slack on this thread, so sleeps end when asked (default slack: 50 µs).
pub(crate) fn tight_timer_slack() {
    // SAFETY: prctl with integer arguments; failure only leaves the default slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}
