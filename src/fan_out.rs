//! Blocking I/O for many items on a few threads. Closing, syncing or creating thousands of
//! partitions costs thousands of fsyncs, whose time goes to waiting for the disk, not to the
//! CPU; the file system commits fsyncs that wait at the same time together, so a few threads
//! side by side finish several times sooner than one.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// At most this many threads work on one call.
const MAX_THREADS: usize = 8;
/// Fewer items than this per thread use fewer threads: a thread costs more than a few fsyncs.
const ITEMS_PER_THREAD: usize = 16;

/// Runs `op` on every item, even after one fails, and returns the first error. Threads take
/// items from a shared cursor; the calling thread is one of them and carries on alone if the
/// system cannot start the others, so this never fails for want of a thread.
pub(crate) fn for_each<T: Sync, E: Send>(
    items: &[T],
    op: impl Fn(&T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    let first_error = Mutex::new(None);
    let work_until_done = || {
        while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
            if let Err(e) = op(item) {
                first_error.lock().get_or_insert(e);
            }
        }
    };
    let threads = (items.len() / ITEMS_PER_THREAD).clamp(1, MAX_THREADS);
    std::thread::scope(|scope| {
        for _ in 1..threads {
            let spawned = std::thread::Builder::new()
                .name("annals-io".into())
                .spawn_scoped(scope, work_until_done);
            if spawned.is_err() {
                break;
            }
        }
        work_until_done();
    });
    match first_error.into_inner() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_and_the_first_error_is_returned() {
        let items: Vec<u32> = (0..1000).collect();
        let seen = Mutex::new(Vec::new());
        let result = for_each(&items, |&i| {
            seen.lock().push(i);
            if i % 100 == 7 {
                Err(i)
            } else {
                Ok(())
            }
        });
        let mut seen = seen.into_inner();
        seen.sort_unstable();
        assert_eq!(seen, items, "every item runs, also after an error");
        assert_eq!(result.map_err(|i| i % 100), Err(7));
    }

    #[test]
    fn no_items_and_one_item() {
        assert_eq!(for_each(&[] as &[u8], |_| Err(())), Ok(()));
        assert_eq!(
            for_each(&[1u8], |&i| if i == 1 { Err(i) } else { Ok(()) }),
            Err(1)
        );
    }
}
