//! A minimal SMTP server over real TCP: enough of RFC 5321 for lettre to deliver to it.
//! It can start later than the app (to simulate an outage) and can refuse mail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct ReceivedEmail {
    pub to: Vec<String>,
    /// The message with quoted-printable soft breaks and `=3D` undone.
    pub content: String,
}

impl ReceivedEmail {
    /// The code shown after "Or enter this code: " (verification and reset tokens).
    pub fn code(&self) -> String {
        let start = self
            .content
            .find("Or enter this code: ")
            .expect("the email carries a code")
            + "Or enter this code: ".len();
        self.content[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<ReceivedEmail>>>,
    refusing: Arc<AtomicBool>,
}

impl SmtpSink {
    /// Reserves a port without listening on it yet: mail to it fails until `listen`.
    pub async fn reserve() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        Self {
            port,
            received: Arc::default(),
            refusing: Arc::default(),
        }
    }

    pub async fn start() -> Self {
        let sink = Self::reserve().await;
        sink.listen().await;
        sink
    }

    pub async fn listen(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let sink = self.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let _ = sink.session(socket).await;
                });
            }
        });
    }

    /// While refusing, every message gets a transient 451 after DATA.
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    async fn session(&self, socket: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read);
        write.write_all(b"220 sink ESMTP\r\n").await?;
        let mut recipients = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let command = line.trim_end().to_ascii_uppercase();
            if command.starts_with("EHLO") {
                write.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
            } else if command.starts_with("HELO")
                || command.starts_with("MAIL")
                || command.starts_with("NOOP")
            {
                write.write_all(b"250 OK\r\n").await?;
            } else if command.starts_with("RSET") {
                recipients.clear();
                write.write_all(b"250 OK\r\n").await?;
            } else if command.starts_with("RCPT") {
                let address = line
                    .split(['<', '>'])
                    .nth(1)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                recipients.push(address);
                write.write_all(b"250 OK\r\n").await?;
            } else if command.starts_with("DATA") {
                write.write_all(b"354 go ahead\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                if self.refusing.load(Ordering::SeqCst) {
                    write.write_all(b"451 try again later\r\n").await?;
                } else {
                    let content = data.replace("=\r\n", "").replace("=3D", "=");
                    self.received.lock().unwrap().push(ReceivedEmail {
                        to: std::mem::take(&mut recipients),
                        content,
                    });
                    write.write_all(b"250 queued\r\n").await?;
                }
                recipients.clear();
            } else if command.starts_with("QUIT") {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                write.write_all(b"502 not implemented\r\n").await?;
            }
        }
    }

    pub fn received(&self) -> Vec<ReceivedEmail> {
        self.received.lock().unwrap().clone()
    }

    pub fn received_by(&self, to: &str) -> Vec<ReceivedEmail> {
        self.received()
            .into_iter()
            .filter(|m| m.to.iter().any(|r| r == to))
            .collect()
    }

    /// Waits until `to` has received `count` emails; returns the last.
    pub async fn wait_for_nth(&self, to: &str, count: usize) -> ReceivedEmail {
        for _ in 0..300 {
            let mail = self.received_by(to);
            if mail.len() >= count {
                return mail[count - 1].clone();
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        panic!(
            "{to} did not receive email #{count}; got {:?}",
            self.received_by(to)
        );
    }

    pub async fn wait_for(&self, to: &str) -> ReceivedEmail {
        self.wait_for_nth(to, 1).await
    }

    /// Lets the outbox worker run a few polls, then reports what `to` got.
    pub async fn settle_and_count(&self, to: &str) -> usize {
        tokio::time::sleep(Duration::from_millis(400)).await;
        self.received_by(to).len()
    }
}
