//! The `portico` binary: everything lives in `portico-server`; this only reports errors.

#[global_allocator]
static ALLOCATOR: portico_server::allocator::NodeAllocator =
    portico_server::allocator::NodeAllocator;

fn main() {
    if let Err(error) = portico_server::cli::run() {
        eprintln!("portico: {error:#}");
        std::process::exit(1);
    }
}
