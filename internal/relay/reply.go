package relay

// Reply is what Verdict.Answer gives for a request: a whole HTTP/1.1
// response now, or Later.
type Reply struct {
	Resp  []byte
	Close bool // close the connection after Resp
	// Later answers after work done off the loop, such as a mint's write
	// to the store. The relay calls it at once, on the loop: it must not
	// block, and must see to it that answer is called exactly once, from
	// any goroutine, with the request's Reply (Resp; a Reply without one
	// closes the connection, as the request was taken on). The client is
	// kept for the answer even when it shuts down its sending side, and
	// Shutdown waits for it; an answer for a client that has gone is
	// dropped.
	Later func(answer func(Reply))
}
