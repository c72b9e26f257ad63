package duckdb

import "runtime"

// thread is the one OS thread the sink's writes run on.
//
// Why: DuckDB's allocators keep freed memory per calling thread (jemalloc
// arenas for its buffers, glibc arenas for the rest). A goroutine calling
// into DuckDB hops between OS threads, so each Apply left its freed memory
// in another arena, where the next one could not reuse it: on a 1M-event
// load, pinning the calls to one thread lowered peak RSS from about 350 to
// 290 MB and CPU time by about 10% (docs/sinks.md).
type thread struct {
	work chan func()
}

func startThread() *thread {
	t := &thread{work: make(chan func())}
	go func() {
		// Never unlocked: the OS thread exits with this goroutine.
		runtime.LockOSThread()
		for f := range t.work {
			f()
		}
	}()
	return t
}

// run runs fn on the thread and waits for it. A panic in fn is raised
// again in the caller's goroutine, as if fn had run there.
func (t *thread) run(fn func() error) error {
	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	t.work <- func() {
		r := result{panicked: true}
		defer func() {
			if r.panicked {
				r.value = recover()
			}
			done <- r
		}()
		r.err = fn()
		r.panicked = false
	}
	r := <-done
	if r.panicked {
		panic(r.value)
	}
	return r.err
}

// stop ends the thread once the work in progress is done.
func (t *thread) stop() { close(t.work) }
