//! XID errors from the kernel log: the `NVRM: Xid (PCI:0000:18:00): 79, ...` lines the
//! driver writes to `/dev/kmsg`.
//!
//! XIDs 79 (fallen off the bus), 119 and 120 (GSP timeout and error) do not arrive through
//! NVML's event set (DCGM reads them from `/dev/kmsg` for that reason), so this reader
//! follows the kernel log (`--gpu.kmsg`, reading it needs `CAP_SYSLOG` where
//! `kernel.dmesg_restrict` is 1) from its end, maps each line to a GPU by PCI bus id and
//! counts it with the NVML events, the same XID on the same GPU within a few seconds from
//! both sources counting once ([`super::xid::Xids::record_from`]). Parsing
//! ([`parse_xid_line`]) is apart from reading.

use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// A PCI address as `(domain, bus, device)`: how the kernel log and NVML's bus id meet.
pub(super) type BusKey = (u32, u32, u32);

/// The XID of a kernel log line and the PCI address of its GPU; `None` for any other line.
/// `/dev/kmsg` records start with `PRIORITY,SEQ,TIME,FLAGS;` which is skipped.
pub(super) fn parse_xid_line(line: &str) -> Option<(BusKey, u64)> {
    let at = line.find("NVRM: Xid (")?;
    let rest = &line[at + "NVRM: Xid (".len()..];
    let (addr, rest) = rest.split_once(')')?;
    let addr = addr.strip_prefix("PCI:").unwrap_or(addr);
    let key = parse_bus(addr)?;
    let rest = rest.strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((key, digits.parse().ok()?))
}

/// `0000:18:00` (the kernel log) or `00000000:18:00.0` (NVML) as a [`BusKey`].
pub(super) fn parse_bus(s: &str) -> Option<BusKey> {
    let mut parts = s.split(':');
    let domain = u32::from_str_radix(parts.next()?, 16).ok()?;
    let bus = u32::from_str_radix(parts.next()?, 16).ok()?;
    let dev = parts.next()?;
    let dev = dev.split('.').next()?;
    let dev = u32::from_str_radix(dev, 16).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((domain, bus, dev))
}

/// Follows the kernel log at `path` from its end, handing each XID line's bus and code to
/// `found`, while `go_on` says so. A log that cannot be opened is logged once, as why the
/// XIDs that NVML does not deliver are missing.
pub(super) fn follow(path: &Path, go_on: &dyn Fn() -> bool, found: &mut dyn FnMut(BusKey, u64)) {
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblocking()
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            tracing::info!(
                path = %path.display(),
                "kernel log not readable, XIDs 79, 119 and 120 (which NVML does not deliver) are missed (needs CAP_SYSLOG): {e}"
            );
            return;
        }
    };
    // From the end: the records already there are from before the exporter started.
    let _ = file.seek(SeekFrom::End(0));
    tracing::info!(path = %path.display(), "following the kernel log for XIDs");
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 8192];
    while go_on() {
        match file.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(200)),
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Some((key, xid)) = parse_xid_line(&String::from_utf8_lossy(&line)) {
                        found(key, xid);
                    }
                }
                if pending.len() > 64 * 1024 {
                    pending.clear();
                }
            }
            // no record yet (/dev/kmsg, non-blocking), or records overwritten meanwhile
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::BrokenPipe) => {
                if e.kind() == ErrorKind::WouldBlock {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), "reading the kernel log failed, XIDs from it stop: {e}");
                return;
            }
        }
    }
}

/// Opens `/dev/kmsg` non-blocking, so that a read with no new record returns at once.
trait NonBlocking {
    fn custom_flags_nonblocking(&mut self) -> &mut Self;
}

impl NonBlocking for std::fs::OpenOptions {
    fn custom_flags_nonblocking(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xid_lines_of_the_kernel_log() {
        assert_eq!(
            parse_xid_line("3,1234,5678901,-;NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus."),
            Some(((0, 0x18, 0), 79))
        );
        assert_eq!(
            parse_xid_line("[ 12.5] NVRM: Xid (PCI:0002:ab:01): 119, pid=1, Timeout after 45s of waiting for RPC response from GPU0 GSP!"),
            Some(((2, 0xab, 1), 119))
        );
        assert_eq!(
            parse_xid_line("6,1,2,-;NVRM: loading NVIDIA UNIX x86_64 Kernel Module"),
            None
        );
        assert_eq!(parse_xid_line("NVRM: Xid (PCI:zz:18:00): 79, x"), None);
        assert_eq!(parse_xid_line("NVRM: Xid (PCI:0000:18:00): , x"), None);
    }

    #[test]
    fn nvml_and_kernel_bus_ids_meet() {
        assert_eq!(parse_bus("00000000:18:00.0"), parse_bus("0000:18:00"));
        assert_eq!(parse_bus("00000001:3B:00.0"), Some((1, 0x3b, 0)));
        assert_eq!(parse_bus("garbage"), None);
    }
}
