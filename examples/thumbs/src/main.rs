// src/main.rs
fn main() -> std::process::ExitCode {
    thumbs::app().main()
}
