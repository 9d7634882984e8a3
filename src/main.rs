use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paysteps::cli::init_logging();
    paysteps::cli::run(paysteps::cli::Cli::parse()).await
}
