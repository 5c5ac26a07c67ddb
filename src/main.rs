//! The `portico` binary: everything lives in `portico-server`; this only reports errors.

/// Sessions, parsers and the store allocate and free small buffers on several threads
/// at once: mimalloc does that with far less CPU and contention than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(error) = portico_server::cli::run() {
        eprintln!("portico: {error:#}");
        std::process::exit(1);
    }
}
