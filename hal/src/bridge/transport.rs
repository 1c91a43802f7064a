//! Byte streams to a timing card: a TCP connection or a serial port (also a pseudo-terminal), both
//! non-blocking and exposing their file descriptor so the session thread can `poll` them.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::{Duration, Instant};

/// Where a timing card is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A card (or its simulator) listening on TCP, `host:port`.
    Tcp {
        /// `host:port`, e.g. `127.0.0.1:7700`.
        address: String,
    },
    /// A card on a serial line (or a pseudo-terminal slave such as `/dev/pts/3`).
    Serial {
        /// Device path.
        path: String,
        /// Line rate in baud (a standard rate: 9600 … 4000000).
        baud: u32,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { address } => f.write_str(address),
            Endpoint::Serial { path, .. } => f.write_str(path),
        }
    }
}

/// Why a transport could not be opened or used. Every message names the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TCP address did not resolve to anything.
    #[error("card {endpoint}: address does not resolve: {reason}")]
    Resolve {
        /// Endpoint.
        endpoint: String,
        /// Resolver message.
        reason: String,
    },
    /// Connecting or opening failed.
    #[error("card {endpoint}: cannot {what}: {source}")]
    Io {
        /// Endpoint.
        endpoint: String,
        /// The step that failed (`connect`, `open`, `configure the line`, `read`, `write`, ...).
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The serial baud rate is not one of the standard rates.
    #[error("card {endpoint}: unsupported baud rate {baud} (allowed: {allowed})")]
    UnsupportedBaud {
        /// Endpoint.
        endpoint: String,
        /// Requested rate.
        baud: u32,
        /// The standard rates.
        allowed: String,
    },
    /// A write could not complete in time (the peer does not read).
    #[error("card {endpoint}: write of {len} bytes did not complete within {timeout_ms} ms")]
    WriteTimeout {
        /// Endpoint.
        endpoint: String,
        /// Bytes to write.
        len: usize,
        /// Limit.
        timeout_ms: u64,
    },
    /// The peer closed the stream.
    #[error("card {endpoint}: connection closed by the card")]
    Closed {
        /// Endpoint.
        endpoint: String,
    },
}

/// Result of one non-blocking read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were read.
    Data(usize),
    /// Nothing available now.
    WouldBlock,
}

enum Stream {
    Tcp(TcpStream),
    Serial(File),
}

/// An open, non-blocking duplex byte stream to a card.
pub struct Transport {
    stream: Stream,
    endpoint: String,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

const BAUD_RATES: [(u32, libc::speed_t); 18] = [
    (9600, libc::B9600),
    (19200, libc::B19200),
    (38400, libc::B38400),
    (57600, libc::B57600),
    (115200, libc::B115200),
    (230400, libc::B230400),
    (460800, libc::B460800),
    (500000, libc::B500000),
    (576000, libc::B576000),
    (921600, libc::B921600),
    (1000000, libc::B1000000),
    (1152000, libc::B1152000),
    (1500000, libc::B1500000),
    (2000000, libc::B2000000),
    (2500000, libc::B2500000),
    (3000000, libc::B3000000),
    (3500000, libc::B3500000),
    (4000000, libc::B4000000),
];

impl Transport {
    /// Opens `endpoint`: TCP connect (bounded by `timeout`, `TCP_NODELAY`) or the serial port (raw
    /// mode at the requested baud). The stream is non-blocking.
    pub fn open(endpoint: &Endpoint, timeout: Duration) -> Result<Transport, TransportError> {
        match endpoint {
            Endpoint::Tcp { address } => open_tcp(address, timeout),
            Endpoint::Serial { path, baud } => open_serial(path, *baud),
        }
    }

    /// The endpoint as text (`127.0.0.1:7700`, `/dev/pts/3`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The file descriptor to `poll` for readability.
    pub fn fd(&self) -> RawFd {
        match &self.stream {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Serial(f) => f.as_raw_fd(),
        }
    }

    fn io_err(&self, what: &'static str, source: io::Error) -> TransportError {
        TransportError::Io {
            endpoint: self.endpoint.clone(),
            what,
            source,
        }
    }

    /// Reads what is available without blocking. End of stream (and `EIO` on a serial line whose
    /// other end went away) is [`TransportError::Closed`].
    pub fn read(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, TransportError> {
        loop {
            let r = match &mut self.stream {
                Stream::Tcp(s) => s.read(buf),
                Stream::Serial(f) => f.read(buf),
            };
            return match r {
                Ok(0) if !buf.is_empty() => Err(TransportError::Closed {
                    endpoint: self.endpoint.clone(),
                }),
                Ok(n) => Ok(ReadOutcome::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
                Err(e) if e.raw_os_error() == Some(libc::EIO) => Err(TransportError::Closed {
                    endpoint: self.endpoint.clone(),
                }),
                Err(e) => Err(self.io_err("read", e)),
            };
        }
    }

    /// Writes all of `data`, waiting for the stream to accept more when it is full, for at most
    /// `timeout` in total.
    pub fn write_all(&mut self, mut data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        let deadline = Instant::now() + timeout;
        let len = data.len();
        while !data.is_empty() {
            let r = match &mut self.stream {
                Stream::Tcp(s) => s.write(data),
                Stream::Serial(f) => f.write(data),
            };
            match r {
                Ok(0) => {
                    return Err(TransportError::Closed {
                        endpoint: self.endpoint.clone(),
                    })
                }
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(TransportError::WriteTimeout {
                            endpoint: self.endpoint.clone(),
                            len,
                            timeout_ms: timeout.as_millis() as u64,
                        });
                    }
                    let wait = (deadline - now).as_millis().clamp(1, 1000) as libc::c_int;
                    let mut pfd = libc::pollfd {
                        fd: self.fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for the duration of the call.
                    unsafe { libc::poll(&mut pfd, 1, wait) };
                }
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    return Err(TransportError::Closed {
                        endpoint: self.endpoint.clone(),
                    })
                }
                Err(e) => return Err(self.io_err("write", e)),
            }
        }
        Ok(())
    }
}

fn open_tcp(address: &str, timeout: Duration) -> Result<Transport, TransportError> {
    let io_err = |what, source| TransportError::Io {
        endpoint: address.to_string(),
        what,
        source,
    };
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .map_err(|e| TransportError::Resolve {
            endpoint: address.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    let mut last = None;
    // One bound for the whole attempt, however many addresses the name resolves to.
    let start = Instant::now();
    for addr in &addrs {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() && last.is_some() {
            break;
        }
        match TcpStream::connect_timeout(addr, left.max(Duration::from_millis(1))) {
            Ok(stream) => {
                stream
                    .set_nodelay(true)
                    .map_err(|e| io_err("set TCP_NODELAY", e))?;
                stream
                    .set_nonblocking(true)
                    .map_err(|e| io_err("make the socket non-blocking", e))?;
                return Ok(Transport {
                    stream: Stream::Tcp(stream),
                    endpoint: address.to_string(),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(io_err("connect", e)),
        None => Err(TransportError::Resolve {
            endpoint: address.to_string(),
            reason: "no addresses".into(),
        }),
    }
}

fn open_serial(path: &str, baud: u32) -> Result<Transport, TransportError> {
    let speed = BAUD_RATES
        .iter()
        .find(|(b, _)| *b == baud)
        .map(|(_, s)| *s)
        .ok_or_else(|| TransportError::UnsupportedBaud {
            endpoint: path.to_string(),
            baud,
            allowed: BAUD_RATES
                .iter()
                .map(|(b, _)| b.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let io_err = |what, source| TransportError::Io {
        endpoint: path.to_string(),
        what,
        source,
    };
    let c_path = std::ffi::CString::new(path).map_err(|_| {
        io_err(
            "open",
            io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
        )
    })?;
    // SAFETY: a valid NUL-terminated path; the returned descriptor is owned by the File below.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io_err("open", io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and termios pointer for each call.
    unsafe {
        if libc::tcgetattr(fd, &mut tio) != 0 {
            return Err(io_err("read the line settings", io::Error::last_os_error()));
        }
        libc::cfmakeraw(&mut tio);
        tio.c_cflag |= libc::CLOCAL | libc::CREAD;
        // VMIN 1 with O_NONBLOCK: no data is EAGAIN, and 0 bytes only means a hang-up.
        tio.c_cc[libc::VMIN] = 1;
        tio.c_cc[libc::VTIME] = 0;
        if libc::cfsetspeed(&mut tio, speed) != 0 {
            return Err(io_err("set the baud rate", io::Error::last_os_error()));
        }
        if libc::tcsetattr(fd, libc::TCSANOW, &tio) != 0 {
            return Err(io_err("configure the line", io::Error::last_os_error()));
        }
    }
    Ok(Transport {
        stream: Stream::Serial(file),
        endpoint: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn read_exact(t: &mut Transport, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < n && Instant::now() < deadline {
            let mut buf = [0u8; 64];
            match t.read(&mut buf).unwrap() {
                ReadOutcome::Data(k) => got.extend_from_slice(&buf[..k]),
                ReadOutcome::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        got
    }

    #[test]
    fn tcp_round_trip_and_eof_is_reported_as_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let ep = Endpoint::Tcp {
            address: addr.clone(),
        };
        let mut t = Transport::open(&ep, Duration::from_secs(2)).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        t.write_all(b"hello", Duration::from_secs(1)).unwrap();
        let mut buf = [0u8; 5];
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        peer.write_all(b"card").unwrap();
        assert_eq!(read_exact(&mut t, 4), b"card");
        drop(peer);
        let mut buf = [0u8; 8];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match t.read(&mut buf) {
                Err(TransportError::Closed { endpoint }) => {
                    assert_eq!(endpoint, addr);
                    break;
                }
                Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                other => panic!("expected closed, got {other:?}"),
            }
        }
    }

    #[test]
    fn tcp_connect_failure_names_the_endpoint() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = Transport::open(
            &Endpoint::Tcp {
                address: addr.clone(),
            },
            Duration::from_millis(500),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&addr) && text.contains("connect"), "{text}");
    }

    fn openpty() -> (File, String) {
        let mut master: libc::c_int = -1;
        let mut slave: libc::c_int = -1;
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: valid out-pointers; null termios/winsize are allowed.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                name.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: openpty wrote a NUL-terminated name; we own both descriptors.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        unsafe { libc::close(slave) };
        (unsafe { File::from_raw_fd(master) }, path)
    }

    #[test]
    fn serial_on_a_pty_is_raw_and_bidirectional() {
        let (mut master, path) = openpty();
        let ep = Endpoint::Serial {
            path: path.clone(),
            baud: 115200,
        };
        let mut t = Transport::open(&ep, Duration::from_secs(1)).unwrap();
        // Raw mode: zero bytes and control characters pass unchanged.
        let data = [0u8, 1, 2, 3, b'\n', 0x03, 0x11, 0x00, 0xFF];
        t.write_all(&data, Duration::from_secs(1)).unwrap();
        let mut buf = [0u8; 9];
        master.read_exact(&mut buf).unwrap();
        assert_eq!(buf, data);
        master.write_all(&data).unwrap();
        assert_eq!(read_exact(&mut t, data.len()), data);
    }

    #[test]
    fn serial_errors_name_the_path_and_the_baud() {
        let err = Transport::open(
            &Endpoint::Serial {
                path: "/dev/pts/0".into(),
                baud: 12345,
            },
            Duration::from_secs(1),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/dev/pts/0") && text.contains("12345") && text.contains("115200"));
        let err = Transport::open(
            &Endpoint::Serial {
                path: "/nonexistent/tty".into(),
                baud: 9600,
            },
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tty"), "{err}");
    }
}
