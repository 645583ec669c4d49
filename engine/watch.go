package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reloads the policies whenever the policy directory changes, until
// ctx is done. It watches the directory itself rather than the files, so it
// sees editors that write a new file and rename it over the old one, and a
// Kubernetes ConfigMap update, which swaps the "..data" symlink the files
// point through. Changes are debounced (Options.Debounce), then handed to
// Reload: refused policies are logged and leave the previous ones active.
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

	timer := time.NewTimer(e.debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watch policies: the watcher stopped")
			}
			e.logger.Debug("policy directory changed", "event", ev.String())
			timer.Reset(e.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watch policies: the watcher stopped")
			}
			e.logger.Warn("watching the policy directory", "source", e.src, "error", err)
			// Events may have been lost; look anyway.
			timer.Reset(e.debounce)
		case <-timer.C:
			_ = e.Reload(ctx) // logs its own refusal
		}
	}
}
