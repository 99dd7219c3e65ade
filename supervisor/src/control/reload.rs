//! SIGHUP: read the settings again and replace worker processes gracefully.
//!
//! New settings take effect at once for what the control loop decides
//! (slot count, queues, timers) and for every task fetched from now on; each
//! worker process is replaced after its current task (idle ones at once), so
//! a new binary or new settings take effect without interrupting any task.
//! Settings with an error keep the old ones in force, and the log says why.

use tracing::{error, info, warn};

use super::{Control, build_chain, contain_reuse, spawn_spec, with_fork_server};
use crate::shared::Current;

impl Control {
    pub(super) fn handle_reload(&mut self) {
        self.notifier.reloading();
        // The password file (redis_password_file) is read again first: new
        // connections of every store in this process use the new password.
        for e in redis_tasks_store::reload_password_files() {
            error!("SIGHUP: {e}; the old password stays in force");
        }
        let current = self.shared.current();
        let config = match &current.config.reload {
            None => current.config.clone(),
            Some(reloader) => match (reloader.0)() {
                Ok(settings) => current.config.reloaded(settings),
                Err(e) => {
                    error!("SIGHUP: settings not reloaded, the old ones stay in force: {e}");
                    self.notifier.ready();
                    return;
                }
            },
        };
        let config = contain_reuse(config);
        let chain = match build_chain(&self.middleware, &config) {
            Ok(chain) => chain,
            Err(e) => {
                error!("SIGHUP: settings not reloaded, the old ones stay in force: {e}");
                self.notifier.ready();
                return;
            }
        };
        if config.settings.redis_url != current.config.settings.redis_url
            || config.settings.redis_prefix != current.config.settings.redis_prefix
        {
            warn!("SIGHUP: redis_url and redis_prefix changes take effect at the next start");
        }
        let spawn = with_fork_server(spawn_spec(&config, &chain, &self.shared.registry), &config);
        self.slots.desired = config.concurrency.max(1);
        let generation = current.generation + 1;
        info!(
            "SIGHUP: settings reloaded (generation {generation}); queues {}, {} slot(s); replacing worker processes after their current task",
            config.queues.join(", "),
            self.slots.desired
        );
        self.shared.replace(Current {
            config,
            chain,
            spawn,
            generation,
        });
        self.slots.broadcast(crate::execute::SlotCommand::Wake);
        self.notifier.ready();
    }
}
