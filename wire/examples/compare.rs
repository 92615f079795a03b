//! `cargo run --release -p wire --example compare`: times wire and rsip side by side with
//! `Instant` and prints `message | wire ns | rsip ns | ratio`, without criterion's overhead.

#[path = "../benches/support/messages.rs"]
mod messages;

fn main() {
    messages::print_table();
}
