package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// resyncInterval is how often Watch rereads the policy directory even when
// no event came: events can be lost (the kernel queue overflows), and a
// directory that was removed and created again is no longer watched.
const resyncInterval = 30 * time.Second

// Watch reloads the policies whenever the policy directory changes, until
// ctx is done. It watches the directory itself rather than the files, so it
// sees editors that write a new file and rename it over the old one, and a
// Kubernetes ConfigMap update, which swaps the "..data" symlink the files
// point through. Changes are debounced (Options.Debounce), then handed to
// Reload: refused policies are logged and leave the previous ones active.
// Every 30 seconds it also rereads the directory, in case an event was
// lost, and watches it again if it was replaced.
//
// Watch returns nil when ctx is done, and at once when the engine runs the
// embedded policies (Options.Dir ""), which cannot change. It returns an
// error when the directory cannot be watched.
func (e *Engine) Watch(ctx context.Context) error {
	if e.src.dir == "" {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policies in %s: %w", e.src, err)
	}
	defer w.Close()
	if err := w.Add(e.src.dir); err != nil {
		return fmt.Errorf("watch policies in %s: %w", e.src, err)
	}

	// Pick up whatever changed between New and now.
	_ = e.Reload(ctx)

	debounce := time.NewTimer(e.debounce)
	debounce.Stop()
	defer debounce.Stop()
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watch policies: the watcher stopped")
			}
			e.logger.Debug("policy directory changed", "event", ev.String())
			debounce.Reset(e.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watch policies: the watcher stopped")
			}
			e.logger.Warn("watching the policy directory", "source", e.src.String(), "error", err)
			debounce.Reset(e.debounce) // events may have been lost: look anyway
		case <-debounce.C:
			_ = e.Reload(ctx) // logs its own refusal
		case <-resync.C:
			if len(w.WatchList()) == 0 {
				if err := w.Add(e.src.dir); err != nil {
					e.logger.Warn("watching the policy directory again", "source", e.src.String(), "error", err)
				}
			}
			_ = e.Reload(ctx)
		}
	}
}
