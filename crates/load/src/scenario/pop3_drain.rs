//! pop3-drain: a POP3 client collecting mail, per client its own account (POP3 locks
//! the maildrop): connect, USER, PASS, UIDL, RETR of every message, DELE of every
//! message (not with --keep), QUIT; again and again. The mailboxes must be filled
//! beforehand: once drained, sessions find them empty (login, UIDL, QUIT).

use crate::cli::DrainArgs;
use crate::client::pop3::Pop3Client;
use crate::run::{Client, Stop};

pub async fn session(client: &mut Client, args: &DrainArgs) -> Result<(), Stop> {
    let mut pop3 = timed!(
        client,
        "connect",
        Pop3Client::connect(&client.target, client.index)
    );
    let result = drain(client, &mut pop3, args).await;
    end_with_quit!(client, pop3, result)
}

async fn drain(client: &mut Client, pop3: &mut Pop3Client, args: &DrainArgs) -> Result<(), Stop> {
    let account = client.account();
    timed!(client, "USER", pop3.user(&account.address));
    timed!(client, "PASS", pop3.pass(&account.password.0));
    let messages = timed!(client, "UIDL", pop3.uidl());
    for (number, _) in &messages {
        timed_soft!(
            client,
            "RETR",
            pop3.multiline("RETR", &format!("RETR {number}"))
        );
    }
    if !args.keep {
        for (number, _) in &messages {
            timed_soft!(
                client,
                "DELE",
                pop3.simple("DELE", &format!("DELE {number}"))
            );
        }
    }
    Ok(())
}
