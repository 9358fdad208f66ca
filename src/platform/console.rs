//! The console and the `log` backend. Output is buffered until a sink exists
//! (the board's PL011, the device tree's, or Xen's console_io), so nothing
//! printed before the device tree is parsed is lost.
use super::pl011::Pl011;
use core::fmt::Write;
use spin::Mutex;

/// Where console bytes go.
#[derive(Clone, Copy)]
pub enum Sink {
    /// Not known yet: buffer.
    Buffer,
    /// A PL011 UART.
    Uart(Pl011),
    /// A hypervisor's console (Xen console_io).
    Func(fn(&[u8])),
}

struct Console {
    sink: Sink,
    fallback: Sink,
    early: heapless::Vec<u8, 2048>,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    sink: Sink::Buffer,
    fallback: Sink::Buffer,
    early: heapless::Vec::new(),
});

impl Console {
    fn emit(&mut self, bytes: &[u8]) {
        match self.sink {
            Sink::Buffer => {
                for &b in bytes {
                    let _ = self.early.push(b);
                }
            }
            Sink::Uart(u) => u.write(bytes),
            Sink::Func(f) => f(bytes),
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.emit(s.as_bytes());
        Ok(())
    }
}

/// Switches the console to `sink`, first replaying anything buffered.
pub fn set_sink(sink: Sink) {
    let mut c = CONSOLE.lock();
    c.sink = sink;
    let early = core::mem::take(&mut c.early);
    c.emit(&early);
}

/// Names the console for reports made before any sink is chosen.
pub fn set_fallback(sink: Sink) {
    CONSOLE.lock().fallback = sink;
}

/// Writes raw bytes to the console.
pub fn write_bytes(bytes: &[u8]) {
    CONSOLE.lock().emit(bytes);
}

/// Nothing is buffered in the sinks themselves; kept for call sites that
/// must be sure output is out before power-off.
pub fn flush() {}

/// Called on the fatal path: a fault while the console was held must not
/// deadlock the report, and a report made before any sink is known goes to
/// the fallback (the board's UART) rather than into the buffer.
pub fn prepare_for_fatal() {
    if CONSOLE.is_locked() {
        // SAFETY: single CPU; the holder was interrupted by the fault that
        // is now being reported and will never resume.
        unsafe { CONSOLE.force_unlock() };
    }
    let fallback = CONSOLE.lock().fallback;
    if matches!(CONSOLE.lock().sink, Sink::Buffer) {
        set_sink(fallback);
    }
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        // The drivers of our real devices chatter at info; keep their warnings.
        !(m.target().starts_with("virtio_drivers") && m.level() > log::Level::Warn)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = match record.level() {
            log::Level::Info => "",
            log::Level::Error => "error: ",
            log::Level::Warn => "warn: ",
            log::Level::Debug => "debug: ",
            log::Level::Trace => "trace: ",
        };
        let mut c = CONSOLE.lock();
        let _ = writeln!(c, "{prefix}{}", record.args());
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the `log` backend at `level`.
pub fn init_log(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
