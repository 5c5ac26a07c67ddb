//! The `portico-load` binary; everything is in the library (see its documentation).

fn main() -> std::process::ExitCode {
    portico_load::main()
}
