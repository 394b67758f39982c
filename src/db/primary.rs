//! PostgreSQL behind a failover manager: the URL lists every database host
//! (`postgres://shop@db1,db2/shop`) and the store talks to whichever is the primary, as
//! libpq does with `target_session_attrs=read-write`. Here: asking every host at once
//! which is the primary, which one the store's pools point at now, and moving them there.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;
use tokio::sync::watch;

use super::{postgres_pools, Store, StoreError, StoreResult};

/// How long a host has to answer "are you the primary?": a powered-off host answers
/// nothing, so without a bound the question would wait for TCP to give up.
const ASK_WITHIN: Duration = Duration::from_secs(2);

/// The URL's hosts, and the one the store's pools connect to.
#[derive(Debug)]
pub(crate) struct Hosts {
    each: Vec<PgConnectOptions>,
    current: watch::Sender<usize>,
}

impl Hosts {
    pub fn new(each: Vec<PgConnectOptions>) -> Hosts {
        Hosts {
            each,
            current: watch::Sender::new(0),
        }
    }

    /// Whether there is a primary to look for (more than one host).
    pub fn several(&self) -> bool {
        self.each.len() > 1
    }

    pub fn current(&self) -> usize {
        *self.current.borrow()
    }

    pub fn options(&self, index: usize) -> &PgConnectOptions {
        &self.each[index]
    }

    /// Point at host `index` from now on (the auth listener hears of it).
    pub fn set_current(&self, index: usize) {
        self.current.send_replace(index);
    }

    /// Changes of `current`.
    pub fn watch(&self) -> watch::Receiver<usize> {
        self.current.subscribe()
    }

    /// "db2:5432".
    pub fn name(&self, index: usize) -> String {
        let options = &self.each[index];
        format!("{}:{}", options.get_host(), options.get_port())
    }

    /// Ask every host at once whether it is the primary: the first in the URL's order
    /// that says so, or why none did ("db1:5432: no answer within 2 s; db2:5432: a
    /// standby (read-only)").
    pub async fn find_primary(&self) -> Result<usize, String> {
        let answers = futures_util::future::join_all(self.each.iter().map(ask)).await;
        if let Some(index) = answers.iter().position(|a| matches!(a, Ok(true))) {
            return Ok(index);
        }
        let why: Vec<String> = answers
            .iter()
            .enumerate()
            .map(|(index, answer)| {
                let said = match answer {
                    Ok(_) => "a standby (read-only)".to_owned(),
                    Err(e) => e.clone(),
                };
                format!("{}: {said}", self.name(index))
            })
            .collect();
        Err(format!(
            "no primary among the database hosts ({})",
            why.join("; ")
        ))
    }
}

impl Store {
    /// Several PostgreSQL hosts: find the primary and, when it is not the host the pools
    /// point at, point them at it (new pools; the old ones go with their connections).
    pub(super) async fn follow_primary(&self) -> StoreResult<()> {
        let Some(hosts) = self.hosts.as_ref().filter(|h| h.several()) else {
            return Ok(());
        };
        let found = hosts
            .find_primary()
            .await
            .map_err(StoreError::Unavailable)?;
        let was = hosts.current();
        if found != was {
            *self.pools.write().expect("pools lock") =
                postgres_pools(hosts.options(found), self.size);
            hosts.set_current(found);
            tracing::warn!(
                primary = %hosts.name(found),
                "the database primary is now {} (was {}): connecting there",
                hosts.name(found),
                hosts.name(was)
            );
        }
        Ok(())
    }
}

/// Whether the host of `options` is a primary (`Ok(false)`: a standby).
async fn ask(options: &PgConnectOptions) -> Result<bool, String> {
    let question = async {
        let mut conn = PgConnection::connect_with(options).await?;
        let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok::<bool, sqlx::Error>(!standby)
    };
    match tokio::time::timeout(ASK_WITHIN, question).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", ASK_WITHIN.as_secs())),
    }
}
