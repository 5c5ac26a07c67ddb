//! The `portico-load` binary; everything is in the library (see its documentation).

/// The load tool shares the machine with the server it measures: the less CPU its
/// allocations take, the more is left to the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portico_load::main()
}
