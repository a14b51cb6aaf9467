//! A small bank on annals' event store: accounts are streams, commands are checked against the
//! account's state and appended with the version they were decided on, transfers between two
//! accounts are one atomic `append_many`, snapshots keep loading fast, and a projection follows
//! every event with a durable checkpoint.
//!
//! Run with `cargo run --release --example bank`.

use std::collections::HashMap;
use std::time::Duration;

use annals::{
    Error, EventStore, EventStoreConfig, ExpectedVersion, Log, NewEvent, Position, RecordedEvent,
    StreamAppend,
};

/// An account's state, folded from its events.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Account {
    open: bool,
    balance: i64,
}

impl Account {
    fn apply(mut self, e: &RecordedEvent) -> Account {
        let amount: i64 = e.data_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        match e.event_type.as_str() {
            "Opened" => self.open = true,
            "Deposited" | "TransferredIn" => self.balance += amount,
            "Withdrawn" | "TransferredOut" => self.balance -= amount,
            _ => {}
        }
        self
    }

    fn encode(&self) -> String {
        self.balance.to_string()
    }

    fn decode(s: &annals::Snapshot) -> Option<Account> {
        let balance = std::str::from_utf8(&s.data).ok()?.parse().ok()?;
        Some(Account {
            open: true,
            balance,
        })
    }
}

/// Loads an account: its latest snapshot plus the events after it. Returns the state and the
/// version it was decided on (for the next append's expected version).
fn load(store: &EventStore, id: &str) -> annals::Result<(Account, ExpectedVersion)> {
    let loaded = store.load(id, Account::decode)?;
    let state = loaded
        .events
        .iter()
        .fold(loaded.state.unwrap_or_default(), |a, e| a.apply(e));
    let expected = loaded
        .version
        .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    Ok((state, expected))
}

/// Withdraws from an account if the balance allows, retrying when another writer got there
/// first (optimistic concurrency).
fn withdraw(store: &EventStore, id: &str, amount: i64) -> annals::Result<bool> {
    loop {
        let (account, expected) = load(store, id)?;
        if account.balance < amount {
            return Ok(false);
        }
        let event = NewEvent::new("Withdrawn", amount.to_string());
        match store.append(id, expected, &[event]) {
            Ok(r) => {
                // A snapshot every 50 events keeps loads short. It is the state this append
                // was decided on plus its own event: exactly the state at its version, even if
                // other writers have appended since.
                if r.next_version % 50 == 0 {
                    let after = Account {
                        balance: account.balance - amount,
                        ..account
                    };
                    store.save_snapshot(id, r.next_version - 1, after.encode())?;
                }
                return Ok(true);
            }
            Err(Error::WrongExpectedVersion { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Moves money between two accounts atomically: both events or neither.
fn transfer(store: &EventStore, from: &str, to: &str, amount: i64) -> annals::Result<bool> {
    loop {
        let (source, from_version) = load(store, from)?;
        let (_, to_version) = load(store, to)?;
        if source.balance < amount {
            return Ok(false);
        }
        let out = [NewEvent::new("TransferredOut", amount.to_string())];
        let inn = [NewEvent::new("TransferredIn", amount.to_string())];
        match store.append_many(&[
            StreamAppend::new(from, from_version, &out),
            StreamAppend::new(to, to_version, &inn),
        ]) {
            Ok(_) => return Ok(true),
            Err(Error::WrongExpectedVersion { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn main() -> annals::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = Log::open(dir.path())?;
    let store = EventStore::open(&log, "bank", EventStoreConfig::default().partitions(4))?;

    let accounts: Vec<String> = (0..8).map(|i| format!("account-{i}")).collect();
    for id in &accounts {
        store.append(
            id,
            ExpectedVersion::NoStream,
            &[
                NewEvent::new("Opened", ""),
                NewEvent::new("Deposited", "1000"),
            ],
        )?;
    }

    // Four tellers withdraw and transfer at once; conflicts are retried, never lost.
    std::thread::scope(|s| {
        for teller in 0..4usize {
            let store = store.clone();
            let accounts = &accounts;
            s.spawn(move || -> annals::Result<()> {
                for i in 0..100usize {
                    let a = &accounts[(teller + i) % accounts.len()];
                    let b = &accounts[(teller + 3 * i + 1) % accounts.len()];
                    if i % 3 == 0 && a != b {
                        transfer(&store, a, b, 7)?;
                    } else {
                        withdraw(&store, a, 5)?;
                    }
                }
                Ok(())
            });
        }
    });

    // A projection: every account's balance, from a subscription to all events.
    let mut balances: HashMap<String, Account> = HashMap::new();
    let mut sub = store.subscribe_all(Position::Start)?;
    while let Some(e) = sub.next(Duration::from_millis(200))? {
        let a = balances.entry(e.stream.clone()).or_default();
        *a = a.apply(&e);
    }
    store.save_checkpoint("balances", &sub.checkpoint())?;

    let mut total = 0;
    for id in &accounts {
        let (account, _) = load(&store, id)?;
        assert_eq!(Some(&account), balances.get(id), "projection of {id}");
        total += account.balance;
        println!(
            "{id}: balance {:>5}, version {:?}",
            account.balance,
            store.stream_version(id)?
        );
    }
    let withdrawn: i64 = accounts
        .iter()
        .map(|id| {
            store
                .read_stream(id, 0, usize::MAX)
                .map(|evs| evs.iter().filter(|e| e.event_type == "Withdrawn").count() as i64 * 5)
        })
        .sum::<annals::Result<i64>>()?;
    // Transfers move money; only withdrawals take it out.
    assert_eq!(total + withdrawn, 8 * 1000);
    println!("total {total} + withdrawn {withdrawn} = 8000: every event accounted for");

    // Reopen: the indexes load from disk and the projection resumes after its checkpoint.
    store.close()?;
    drop(store);
    log.close()?;
    let log = Log::open(dir.path())?;
    let store = EventStore::open(&log, "bank", EventStoreConfig::default().partitions(4))?;
    let checkpoint = store.load_checkpoint("balances")?.expect("saved above");
    let mut sub = store.subscribe_all(Position::After(checkpoint))?;
    assert!(
        sub.next(Duration::from_millis(50))?.is_none(),
        "nothing new since the checkpoint"
    );
    println!(
        "reopened without replaying the log: index tables per partition {:?}",
        store.index_tables()
    );
    Ok(())
}
