//! An application's own function running beside the built-in Stripe ones: when an
//! invoice is paid, let it settle, send a receipt, then wait up to three days for the
//! customer to open it and send one reminder if they never do.
//!
//! ```sh
//! cargo run --example receipts -- dev                     # paysteps dev, plus this function
//! cargo run -- trigger invoice.paid                       # in another terminal
//! cargo run -- send app/receipt.opened --data '{"invoice":"in_…"}'
//! ```
//!
//! Every command and setting of the `paysteps` binary works here (`serve`, `--db`,
//! `DATABASE_URL`, …); the dashboard shows the `invoice-receipt` runs beside the others.

use std::time::Duration;

use clap::Parser;
use paysteps::{Ctx, Function, Interrupt, Trigger, WaitFor};
use serde::{Deserialize, Serialize};

/// How long a paid invoice settles before its receipt goes out.
const SETTLE: Duration = Duration::from_secs(30);
/// How long the customer has to open the receipt before the reminder.
const OPEN_WITHIN: Duration = Duration::from_secs(3 * 24 * 60 * 60);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Receipt {
    invoice: String,
    email: Option<String>,
    amount_paid: i64,
    currency: String,
}

/// What the run did, shown as its output in the dashboard.
#[derive(Debug, Serialize)]
struct Outcome {
    receipt: Receipt,
    opened: bool,
    reminded: bool,
}

async fn invoice_receipt(ctx: Ctx) -> Result<Outcome, Interrupt> {
    let receipt = ctx
        .step
        .run("read-invoice", || async {
            let invoice = &ctx.event.data["data"]["object"];
            Ok(Receipt {
                invoice: invoice["id"].as_str().unwrap_or_default().to_owned(),
                email: invoice["customer_email"].as_str().map(str::to_owned),
                amount_paid: invoice["amount_paid"].as_i64().unwrap_or_default(),
                currency: invoice["currency"].as_str().unwrap_or("usd").to_owned(),
            })
        })
        .await?;
    ctx.step.sleep("settle", SETTLE).await?;
    let sent = receipt.clone();
    ctx.step
        .run("send-receipt", || async move {
            // A real application calls its email service here; a failure is retried.
            tracing::info!(invoice = %sent.invoice, to = ?sent.email, amount = sent.amount_paid, currency = %sent.currency, "receipt sent");
            Ok(())
        })
        .await?;
    let opened = ctx
        .step
        .wait_for_event(
            "wait-for-open",
            WaitFor::event("app/receipt.opened")
                .matching_paths("data.object.id", "data.invoice")
                .timeout(OPEN_WITHIN),
        )
        .await?
        .is_some();
    if !opened {
        let invoice = receipt.invoice.clone();
        ctx.step
            .run("send-reminder", || async move {
                tracing::info!(%invoice, "receipt never opened: reminder sent");
                Ok(())
            })
            .await?;
    }
    Ok(Outcome {
        receipt,
        opened,
        reminded: !opened,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paysteps::init_logging()?;
    let receipts = Function::new(
        "invoice-receipt",
        Trigger::event("stripe/invoice.paid"),
        invoice_receipt,
    )
    .retries(5)
    // One receipt per invoice, however often Stripe resends the event.
    .idempotency("data.object.id");
    paysteps::run_with(paysteps::Cli::parse(), vec![receipts]).await
}
