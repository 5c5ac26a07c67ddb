//! smtp-submit, smtp-inbound and lmtp: sending messages from the corpus, each as its own
//! bytes with From/To rewritten, --per-connection on one connection. A connection:
//! connect, EHLO (LHLO; with STARTTLS: EHLO, STARTTLS, EHLO), AUTH PLAIN (submission
//! only), then per message MAIL FROM, RCPT TO for --rcpts random distinct recipients,
//! DATA, the message (its reply; for LMTP one per accepted recipient), then QUIT. With
//! --pipelining (and PIPELINING offered) MAIL, RCPT and DATA go as one group, timed as
//! `envelope`.
//!
//! Senders: submission sends as the client's account; inbound and LMTP as
//! --mail-from. A refused recipient is counted and the others go on; with none
//! accepted, or a refused MAIL, the transaction is reset (RSET, unmeasured).

use crate::cli::{InboundArgs, SendArgs};
use crate::client::smtp::{Dialect, SmtpClient};
use crate::message::dot_stuffed;
use crate::run::{Client, Stop};

use super::pick_message;

/// How one of the three scenarios sends.
pub struct Plan {
    dialect: Dialect,
    /// Log in with AUTH PLAIN and send as the account.
    authenticate: bool,
    /// The sender when not authenticating.
    mail_from: String,
    args: SendArgs,
}

impl Plan {
    pub fn submission(args: &SendArgs) -> Plan {
        Plan {
            dialect: Dialect::Smtp,
            authenticate: true,
            mail_from: String::new(),
            args: args.clone(),
        }
    }

    pub fn inbound(args: &InboundArgs) -> Plan {
        Plan {
            dialect: Dialect::Smtp,
            authenticate: false,
            mail_from: args.mail_from.clone(),
            args: args.send.clone(),
        }
    }

    pub fn lmtp(args: &InboundArgs) -> Plan {
        Plan {
            dialect: Dialect::Lmtp,
            ..Plan::inbound(args)
        }
    }
}

pub async fn session(client: &mut Client, plan: &Plan) -> Result<(), Stop> {
    let mut smtp = timed!(
        client,
        "connect",
        SmtpClient::connect(&client.target, client.index, plan.dialect, &plan.args.helo)
    );
    let result = send(client, &mut smtp, plan).await;
    end_with_quit!(client, smtp, result)
}

async fn send(client: &mut Client, smtp: &mut SmtpClient, plan: &Plan) -> Result<(), Stop> {
    let hello = match plan.dialect {
        Dialect::Smtp => "EHLO",
        Dialect::Lmtp => "LHLO",
    };
    let greeting = timed!(client, hello, smtp.hello(client.target.tls));
    let pipelining = plan.args.pipelining && greeting.has_extension("PIPELINING");
    let account = client.account();
    let sender = if plan.authenticate {
        timed!(
            client,
            "AUTH",
            smtp.auth_plain(&account.address, &account.password.0)
        );
        account.address.clone()
    } else {
        plan.mail_from.clone()
    };
    for _ in 0..plan.args.per_connection {
        let recipients: Vec<String> = client
            .rng
            .distinct(client.settings.recipients.len(), plan.args.rcpts)
            .into_iter()
            .map(|i| client.settings.recipients[i].clone())
            .collect();
        let to: Vec<&str> = recipients.iter().map(String::as_str).collect();
        let message = dot_stuffed(&pick_message(client, &sender, &to)?);

        if pipelining {
            let envelope = timed!(client, "envelope", smtp.envelope(&sender, &recipients));
            for refusal in &envelope.refusals {
                client.error(refusal);
            }
            if envelope.data_accepted {
                timed_soft!(client, "message", smtp.message(&message, envelope.accepted));
            } else {
                smtp.rset().await?;
            }
            continue;
        }
        if timed_soft!(client, "MAIL", smtp.mail_from(&sender)).is_none() {
            smtp.rset().await?;
            continue;
        }
        let mut accepted = 0;
        for recipient in &recipients {
            if timed_soft!(client, "RCPT", smtp.rcpt_to(recipient)).is_some() {
                accepted += 1;
            }
        }
        if accepted == 0 {
            smtp.rset().await?;
            continue;
        }
        timed!(client, "DATA", smtp.data());
        timed_soft!(client, "message", smtp.message(&message, accepted));
    }
    Ok(())
}
