//! `chaperone webhook add|list|remove|status`: event subscriptions
//! (`docs/webhooks.md`).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use chaperone::instant;
use chaperone_store::outbox::{EVENT_TYPES, Owner, SubscriptionStatus};

use super::{DbArg, EXIT_USAGE, open_existing};

/// The webhook subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Subscribe an endpoint to the events of a vendor's accounts or of one
    /// account.
    Add(AddArgs),
    /// List the subscriptions, removed ones too.
    List(ListArgs),
    /// Remove a subscription: nothing more is sent to it.
    Remove(RemoveArgs),
    /// Deliveries per subscription: pending, delivered, dead, the last
    /// error and the next try.
    Status(StatusArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Add(args) => args.run(),
            Command::List(args) => args.run(),
            Command::Remove(args) => args.run(),
            Command::Status(args) => args.run(),
        }
    }
}

/// Arguments of `webhook add`: exactly one of `--vendor`, `--account`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("owner").required(true).args(["vendor", "account"])))]
pub struct AddArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The endpoint events are POSTed to (`http://` or `https://`).
    #[arg(long)]
    pub url: String,
    /// The event types, comma-separated: grant, modify, revoke, expire,
    /// act, setting, invitation, service_account.created,
    /// service_account.rights_changed, service_account.removed,
    /// module.activated, policy_error; a decided type may end in `.allowed`
    /// or `.denied` (`act.denied`); `*` for all.
    #[arg(long, value_delimiter = ',', required = true)]
    pub types: Vec<String>,
    /// For every account of this vendor id (and its module activations).
    #[arg(long, value_name = "VENDOR")]
    pub vendor: Option<String>,
    /// For this one account.
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl AddArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let owner = match (self.vendor, self.account) {
            (Some(vendor), None) => Owner::Vendor(vendor),
            (None, Some(account)) => Owner::Customer(account),
            _ => anyhow::bail!("give exactly one of --vendor, --account"),
        };
        let host = open_existing(&self.db)?;
        let subscription = host
            .add_webhook(instant::now(), owner, &self.url, &self.types, "cli")
            .context("cannot add the subscription")?;
        if self.json {
            println!("{}", serde_json::to_string(&subscription)?);
        } else {
            println!("{}", subscription.id);
            eprintln!(
                "subscribed {} to {} of {}; a running server sends from its next poll",
                subscription.url,
                subscription.types.join(","),
                owner_text(&subscription.owner)
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn owner_text(owner: &Owner) -> String {
    match owner {
        Owner::Vendor(v) => format!("vendor `{v}`'s accounts"),
        Owner::Customer(a) => format!("account `{a}`"),
    }
}

/// Arguments of `webhook list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl ListArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let host = open_existing(&self.db)?;
        let subscriptions = host.webhooks(None)?;
        if self.json {
            println!("{}", serde_json::to_string(&subscriptions)?);
            return Ok(ExitCode::SUCCESS);
        }
        for s in &subscriptions {
            let state = match s.removed_ms {
                Some(at) => format!("removed {}", instant::format(at)),
                None => "live".into(),
            };
            println!(
                "{}  {}  {}  [{}]  {state}",
                s.id,
                owner_text(&s.owner),
                s.url,
                s.types.join(",")
            );
        }
        if subscriptions.is_empty() {
            eprintln!(
                "no subscriptions; add one with `chaperone webhook add --url URL --types {} --vendor V`",
                EVENT_TYPES.first().copied().unwrap_or("grant")
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Arguments of `webhook remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The subscription's id (`wh_...`).
    pub id: String,
}

impl RemoveArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let host = open_existing(&self.db)?;
        if host.remove_webhook(instant::now(), &self.id, "cli")? {
            eprintln!("removed subscription `{}`", self.id);
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("no live subscription `{}`", self.id);
            Ok(ExitCode::from(EXIT_USAGE))
        }
    }
}

/// Arguments of `webhook status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// One subscription (default: every live one).
    pub id: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let host = open_existing(&self.db)?;
        let ids: Vec<String> = match &self.id {
            Some(id) => vec![id.clone()],
            None => host
                .webhooks(None)?
                .into_iter()
                .filter(|s| s.removed_ms.is_none())
                .map(|s| s.id)
                .collect(),
        };
        let mut statuses: Vec<SubscriptionStatus> = Vec::new();
        for id in &ids {
            match host.webhook_status(id)? {
                Some(status) => statuses.push(status),
                None => {
                    eprintln!("no subscription `{id}`");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            }
        }
        if self.json {
            println!("{}", serde_json::to_string(&statuses)?);
            return Ok(ExitCode::SUCCESS);
        }
        for s in &statuses {
            println!(
                "{}  {}  pending {}  delivered {}  dead {}",
                s.subscription.id, s.subscription.url, s.pending, s.delivered, s.dead
            );
            if let Some(at) = s.next_attempt_ms {
                let when = if at <= 0 {
                    "now".to_owned()
                } else {
                    instant::format(at)
                };
                println!("  next try: {when}");
            }
            if let Some(error) = &s.last_error {
                println!(
                    "  last error: {} at {} (delivery {})",
                    error.error,
                    instant::format(error.at_ms),
                    error.delivery
                );
            }
            if let Some(at) = s.last_delivered_ms {
                println!("  last delivered: {}", instant::format(at));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
