//! A plain-text front for a gRPC backend whose first connections freeze once their HTTP/2
//! handshake is done: it relays the client's connection preface and frames up to the first
//! request's `HEADERS` frame (and everything the backend sends until then), then stops relaying
//! either way and holds both sockets open. A collector process that hung with its connections
//! open: TCP and HTTP/2 are up, no request is ever answered. Later connections are relayed
//! whole, as a load balancer would send them to a healthy replica.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct FreezingFront {
    pub port: u16,
    _rt: tokio::runtime::Runtime,
}

impl FreezingFront {
    /// Freezes the first connection.
    pub fn start(backend: u16) -> FreezingFront {
        Self::freezing(backend, 1)
    }

    /// Freezes the first `frozen` connections.
    pub fn freezing(backend: u16, frozen: usize) -> FreezingFront {
        let (rt, listener, port) = super::front_runtime();
        rt.spawn(async move {
            let mut left = frozen;
            while let Ok((mut client, _)) = listener.accept().await {
                let freeze = left > 0;
                left = left.saturating_sub(1);
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                    else {
                        return;
                    };
                    if !freeze {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                    let (mut server_read, mut server_write) = server.into_split();
                    let (mut client_read, mut client_write) = client.into_split();
                    // The backend's side, until the client's first request arrives.
                    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
                    let down = tokio::spawn(async move {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            tokio::select! {
                                _ = &mut stopped => break,
                                n = server_read.read(&mut buf) => match n {
                                    Ok(n) if n > 0 => {
                                        if client_write.write_all(&buf[..n]).await.is_err() {
                                            break;
                                        }
                                    }
                                    _ => break,
                                },
                            }
                        }
                        (server_read, client_write)
                    });
                    // The client's side: the preface, then whole frames until a HEADERS one.
                    let mut preface = [0u8; 24];
                    if client_read.read_exact(&mut preface).await.is_err()
                        || server_write.write_all(&preface).await.is_err()
                    {
                        return;
                    }
                    loop {
                        let mut head = [0u8; 9];
                        if client_read.read_exact(&mut head).await.is_err() {
                            return;
                        }
                        if head[3] == 0x1 {
                            break; // HEADERS: a request. Frozen from here on.
                        }
                        let len = usize::from(head[0]) << 16
                            | usize::from(head[1]) << 8
                            | usize::from(head[2]);
                        let mut payload = vec![0u8; len];
                        if client_read.read_exact(&mut payload).await.is_err()
                            || server_write.write_all(&head).await.is_err()
                            || server_write.write_all(&payload).await.is_err()
                        {
                            return;
                        }
                    }
                    let _ = stop.send(());
                    let held = down.await;
                    let _kept = (held, client_read, server_write);
                    std::future::pending::<()>().await;
                });
            }
        });
        FreezingFront { port, _rt: rt }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
