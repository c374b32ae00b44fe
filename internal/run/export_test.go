package run

// Claims returns how many claims w made, and how many of the runs it
// claimed it handed back to the queue (their endpoint busy).
func Claims(w *Worker) (claims, handedBack int64) { return w.claims.Load(), w.handBacks.Load() }
