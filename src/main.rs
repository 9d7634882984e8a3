use clap::Parser;

/// The server allocates and frees many small buffers per request and per step, from
/// several threads at once, where mimalloc spends about half the time glibc's malloc does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paysteps::init_logging()?;
    paysteps::run(paysteps::Cli::parse()).await
}
