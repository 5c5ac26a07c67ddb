//! login-storm: connect, log in, log out, as fast as each client can, over IMAP
//! (LOGIN, LOGOUT), POP3 (USER, PASS, QUIT) or SMTP submission (EHLO, AUTH PLAIN,
//! QUIT). Measures connection setup (TCP, TLS, greeting) and password checks.

use crate::cli::StormProtocol;
use crate::client::imap::ImapClient;
use crate::client::pop3::Pop3Client;
use crate::client::smtp::{Dialect, SmtpClient};
use crate::run::{Client, Stop};

use super::connection_usable;

pub async fn session(client: &mut Client, protocol: StormProtocol) -> Result<(), Stop> {
    let account = client.account();
    match protocol {
        StormProtocol::Imap => {
            let mut imap = timed!(
                client,
                "connect",
                ImapClient::connect(&client.target, client.index)
            );
            let result = async {
                timed!(
                    client,
                    "LOGIN",
                    imap.login(&account.address, &account.password.0)
                );
                timed!(client, "LOGOUT", imap.logout());
                Ok(())
            }
            .await;
            if connection_usable(&result) {
                imap.quit_quietly().await;
            }
            result
        }
        StormProtocol::Pop3 => {
            let mut pop3 = timed!(
                client,
                "connect",
                Pop3Client::connect(&client.target, client.index)
            );
            let result = async {
                timed!(client, "USER", pop3.user(&account.address));
                timed!(client, "PASS", pop3.pass(&account.password.0));
                Ok::<(), Stop>(())
            }
            .await;
            end_with_quit!(client, pop3, result)
        }
        StormProtocol::Smtp => {
            let mut smtp = timed!(
                client,
                "connect",
                SmtpClient::connect(
                    &client.target,
                    client.index,
                    Dialect::Smtp,
                    "load.example.net"
                )
            );
            let result = async {
                timed!(client, "EHLO", smtp.hello(client.target.tls));
                timed!(
                    client,
                    "AUTH",
                    smtp.auth_plain(&account.address, &account.password.0)
                );
                Ok::<(), Stop>(())
            }
            .await;
            end_with_quit!(client, smtp, result)
        }
    }
}
