//! `shotline-cardsim`: the firmware simulator (a timing card on TCP or a pseudo-terminal).
fn main() {
    std::process::exit(shotline_cardsim::cli::main());
}
