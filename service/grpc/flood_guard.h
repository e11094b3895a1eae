/*
 * Closes HTTP/2 connections that reset their streams faster than the
 * server answers them ("rapid reset", CVE-2023-44487).
 *
 * Why here: gRPC core 1.51 turns every stream whose request message
 * arrived into a call and queues it until a worker asks for one, also
 * after the client has reset the stream; reset streams no longer count
 * against the stream cap and nothing limits their rate. A client that
 * resets each stream at once queues calls faster than the workers answer
 * them, and memory grows with the queue (~13 KiB a call). Core has no
 * per-connection hook, but every call names its connection
 * (grpc_call_get_peer).
 *
 * The rule (Go's fix for the same attack, in our terms): a connection may
 * hold at most `max_open` calls the server has taken and not yet answered.
 * A client that does not reset streams can never exceed the stream cap
 * (SETTINGS_MAX_CONCURRENT_STREAMS), so max_open is twice that cap: past
 * it, the calls are those of streams the client reset while the server
 * had not yet got to them. The connection is then closed (WARN line
 * naming the peer, metric). Calls near or past their deadline do not
 * count (struct flood_ticket): a client resets those at its deadline
 * whatever the server does, a stalled store's callers all of them, and
 * that is no flood. ("Answered" is when
 * the server begins its answer; calls answered whose answer has not yet
 * completed here count too, but only past FLOOD_OPEN_FACTOR times
 * max_open: see flood_guard_answered.) For
 * FLOOD_CLOSED_HOLD_MS the calls still queued from it are dropped
 * unanswered instead of running their handler, so the backlog the
 * attacker built drains at once.
 *
 * To see a flood as it arrives rather than once the workers got through
 * the queue, the worker loop (server.c) runs the calls of a "busy"
 * connection only after taking every call that is ready: a connection is
 * busy once it has more calls open than the stream cap, or once the
 * client reset more than half of its recent calls (at least
 * FLOOD_SUSPECT_RESETS of them; a reset is a call the client cancelled
 * before our answer and more than FLOOD_DEADLINE_SLACK_MS before its
 * deadline; counts halve every
 * FLOOD_WINDOW_CALLS calls). A busy flooder's calls pile up open and its
 * connection is closed; the calls of every other connection ("quiet") run
 * as soon as they are taken, ahead of the busy ones. A call that hit its
 * deadline is never a reset, so clients whose calls time out now and then
 * stay quiet.
 *
 * Closing: the guard finds the server's own socket whose local port is
 * the listening port and whose peer is that address, by scanning
 * /proc/self/fd. It works on a dup() of the descriptor: checks the
 * addresses again on the dup, calls shutdown(SHUT_RDWR) on it and closes
 * the dup. gRPC still owns and closes its descriptor (it sees the end of
 * the stream and frees the connection's streams); a number gRPC closes
 * and reuses meanwhile is never touched, because the dup pins the socket
 * that was checked. Plaintext and TLS alike (the TCP socket is the same).
 *
 * Memory: at most FLOOD_OPEN_FACTOR x max_open calls per connection taken
 * and not completed (800 at the cap of 100), so the bound of a flood is
 * that x ~13 KiB (~10 MiB) x the attacker's connections (a
 * flood over many connections is a connection flood, which core 1.51
 * cannot cap either), plus the calls core has made and not yet handed
 * over: every stream whose message arrived before its reset is such a
 * call, so the workers must drop them as fast as core makes them (the
 * drop is a bare grpc_call_unref for that reason, server.c call_drop).
 * Freed memory is handed back by malloc_trim on the guard's own thread,
 * after a flood and after any other burst (trim_idle_heap).
 *
 * Bytes no call accounts for (a header block that never ends: HEADERS,
 * then CONTINUATION frames without END_HEADERS, the "CONTINUATION
 * flood"): core 1.51 checks its metadata limit per frame, not per header
 * block, and keeps every header of the block until the block ends, so one
 * connection sending such a block grew the server by ~2 bytes a byte sent,
 * to GBs (measured: 960 MB sent, 2.7 GB RSS), with no call ever made.
 * Every HTTP/2 byte a client sends belongs to a call (its headers, its
 * message) or to a few small control frames. So the guard's own thread
 * (watch_main) looks every FLOOD_WIRE_SCAN_MS at each connection of the
 * listening port: the bytes the kernel received on it (TCP_INFO) against
 * the bytes of the calls the workers took from it (flood_guard_admit's
 * call_bytes, generous: decoded headers and the message as received, plus
 * framing). The difference is the connection's debt; it is forgiven at
 * FLOOD_WIRE_FORGIVE bytes a second (pings, window updates, a TLS
 * handshake) and cannot go below -FLOOD_WIRE_BANK (no banking of credit
 * for a later flood). Past FLOOD_WIRE_MAX_DEBT the connection is closed
 * as for rapid reset (WARN line, metric reason "unaccounted_bytes"). A
 * client with every allowed stream busy with a 64 KiB message has at
 * most 100 x 64 KiB in flight that no call has taken yet, well under the
 * limit. A block of indexed headers (one-byte HPACK references to one
 * table entry) costs core ~52 bytes for each byte sent (16 MB sent: 857
 * MB): while the server's RSS is past FLOOD_WIRE_HIGH_RSS_KIB the
 * connection with the largest debt is closed once that debt passes
 * FLOOD_WIRE_HIGH_DEBT. Limits: a block sent slower than
 * FLOOD_WIRE_FORGIVE is never closed.
 *
 * A client that does not read: the same look reads TCP_INFO's bytes the
 * client acknowledged and whether bytes of ours wait to be sent or
 * acknowledged. A client that stops reading (a zero window) keeps what
 * core has queued for it until the kernel gives up on the connection,
 * after 20 s (core sets TCP_USER_TIMEOUT on server sockets): 300
 * connections that sent 30,000 PINGs each and read nothing held 128 MB
 * for those 20 s (core stops reading a connection once 10,000 answers
 * wait, and keeps them), and an attacker who opens such connections
 * without pause holds 20 s of them. While the server's RSS is past
 * FLOOD_WIRE_HIGH_RSS_KIB, bytes waiting FLOOD_STUCK_MS with none
 * acknowledged close the connection (WARN line, metric reason
 * "not_reading").
 *
 * Streams held without a request: a client that opens streams (HEADERS
 * without END_STREAM) and never sends their message holds a call in core
 * for each (~12.5 KiB) for as long as it likes, and no worker ever sees
 * them (core hands a call over once its message is in). 400 connections x
 * 100 such streams took the server to 508 MB; the stream cap and
 * --connection-limit allow 4,096 x 100. So once a second the watcher
 * reads channelz (channelz.h): per connection, the streams the client
 * started, the streams ended and the request messages received. A stream
 * started FLOOD_STALL_MS ago that has neither ended nor been taken by a
 * worker (flood_guard_admit's open calls) is held in core; a connection
 * holding more than FLOOD_STALL_STREAMS of them is closed (WARN line,
 * metric reason "held_streams"). Counting by totals: the streams started
 * by a look FLOOD_STALL_MS old, less those ended now, less the calls the
 * workers hold now (flood_stall_held). Under memory pressure a look
 * FLOOD_STALL_PRESSED_MS old is enough, but then only streams whose
 * request has not arrived count (the streams started then, less the
 * requests received now, when that is fewer): a client whose calls wait
 * that long for a worker, or whose ended streams core has not counted
 * yet, has sent its requests and is no such attacker. Before, a busy
 * server under pressure closed such clients (a client at the stream cap
 * whose calls timed out on a stalled store, in a sanitizer build). Core
 * counts every message a call reads; reflection streams read many, and
 * report each past the first (flood_guard_more_requests), so requests on
 * one stream cannot stand for other streams' missing ones.
 *
 * Thread-safe: workers call everything here concurrently; the table has
 * one lock per group of entries.
 */
#ifndef DAS_GRPC_FLOOD_GUARD_H
#define DAS_GRPC_FLOOD_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#include <grpc/grpc.h>

/* Resets that make a connection busy when they are most of its calls. */
#define FLOOD_SUSPECT_RESETS 16
/* Calls answered but not yet completed count against a connection only
 * past this many times max_open (flood_guard_answered). */
#define FLOOD_OPEN_FACTOR 4
#define FLOOD_WINDOW_CALLS 256
/* A call counts as unanswered until this long before its deadline at
 * most (struct flood_ticket). */
#define FLOOD_DEADLINE_SLACK_MS 100
/* How long calls still queued from a closed connection are dropped. */
#define FLOOD_CLOSED_HOLD_MS 5000
/* Free memory is handed back at most this often after a close. */
#define FLOOD_TRIM_MS 1000
/* Connections tracked at once: groups x slots (a connection with no open
 * call is forgotten first, one closed lately last). The groups are sized
 * for FLOOD_TABLE_ROOM entries per connection the server can hold (each
 * ~64 bytes, against ~18 KiB of an idle connection in core), at least
 * FLOOD_TABLE_GROUPS: a group holds 16 whatever the hash gives it, and
 * when closed connections filled a group, the calls of one closed after
 * them were answered, not dropped (1,500 connections closed at once in a
 * table of 1,024: 48,700 of their 150,000 calls ran their handler). At
 * most FLOOD_TABLE_MAX_GROUPS (~4.3 MB, 16,384 connections): with
 * --connection-limit 0 the room is the hard open-files limit, often a
 * million. */
#define FLOOD_TABLE_GROUPS 64
#define FLOOD_TABLE_MAX_GROUPS (1 << 12)
#define FLOOD_TABLE_SLOTS 16
#define FLOOD_TABLE_ROOM 4
/* Bytes no call accounts for (see above): how often connections are
 * looked at, the debt that closes one, the credit it may keep, the debt
 * forgiven each second. */
#define FLOOD_WIRE_SCAN_MS   100
#define FLOOD_WIRE_MAX_DEBT  (16 << 20)
#define FLOOD_WIRE_BANK	     (8 << 20)
#define FLOOD_WIRE_FORGIVE   (16 << 10)
/* Past this much memory, the largest debt past FLOOD_WIRE_HIGH_DEBT
 * closes its connection too (a header block of indexed headers). */
#define FLOOD_WIRE_HIGH_RSS_KIB (64L << 10)
#define FLOOD_WIRE_HIGH_DEBT	(1 << 20)
/* Streams held without a request (see the top): how often channelz is
 * read, how long a stream may stay in core neither ended nor taken, and
 * how many such streams a connection may hold (long-lived calls such as
 * Health/Watch or reflection count among them). */
#define FLOOD_STALL_SCAN_MS 1000
#define FLOOD_STALL_MS	    10000
#define FLOOD_STALL_STREAMS 8
/* While the server's RSS is past FLOOD_WIRE_HIGH_RSS_KIB: channelz is read
 * at every look of the watcher, and this age is enough. */
#define FLOOD_STALL_PRESSED_MS 300
/* A client that does not read: while the server's RSS is past
 * FLOOD_WIRE_HIGH_RSS_KIB, bytes of ours waiting this long with none
 * acknowledged close its connection. */
#define FLOOD_STUCK_MS 2000
/* Memory a burst left free (see trim_idle_heap): while the RSS is past
 * FLOOD_WIRE_HIGH_RSS_KIB, a trim when more than FLOOD_IDLE_HEAP_KIB of it
 * holds nothing malloc handed out, at most every FLOOD_IDLE_TRIM_MS (a
 * trim that gives back less than half of that waits twice as long before
 * the next, up to FLOOD_IDLE_TRIM_MAX_MS). */
#define FLOOD_IDLE_HEAP_KIB	  (32L << 10)
#define FLOOD_IDLE_TRIM_MS	  5000
#define FLOOD_IDLE_TRIM_MAX_MS	  320000

/* A call's connection: the peer's address and port (IPv4-mapped IPv6 as
 * IPv4). is_known is false for peers we cannot parse or track (never
 * guarded). */
struct flood_peer {
	bool is_known;
	uint8_t family; /* 4 or 6 */
	uint16_t port;
	uint8_t addr[16];
};

/*
 * An admitted call as the guard counts it: listed in its connection's
 * entry while it is unanswered (the guard's; the caller keeps it in its
 * call and passes it back to flood_guard_answered and _release).
 *
 * A call stops counting as unanswered when the server begins its answer,
 * or FLOOD_DEADLINE_SLACK_MS before its deadline, whichever comes first:
 * by then its client gives up on it (a gRPC client resets the stream at
 * its deadline), and may open a new stream in its place, while the
 * server's call can still wait (a stalled database). Such a reset is no
 * flood. The slack is there because the client's clock for the deadline
 * started before the server's (the server takes it from the grpc-timeout
 * header when the headers arrive), so the client resets and makes its
 * next calls a little before the server's deadline passes. Calls past
 * that point are taken off the count only when a connection is about to
 * pass max_open (flood_guard_admit walks its list then), so the common
 * path pays nothing for it. A call that reaches a worker already that
 * close to its deadline counts until it is answered, as every call did
 * before: a flood whose streams carry short deadlines (or wait in core's
 * queue past them) is counted as any other.
 */
struct flood_ticket {
	struct flood_ticket *prev, *next;
	int64_t overdue_ms; /* CLOCK_MONOTONIC ms; INT64_MAX: no deadline */
	bool is_listed;
	bool may_lapse; /* admitted before overdue_ms: leaves the count then */
};

struct flood_guard;

/* A guard for the server listening on port (the local port of the sockets
 * it may close), allowing max_open calls per connection, with room to
 * track n_conns connections. NULL on allocation failure. */
struct flood_guard *flood_guard_new(int port, unsigned max_open,
				    long n_conns);

/* NULL is a no-op. */
void flood_guard_free(struct flood_guard *g);

/* What to do with a call a worker took off the queue. */
enum flood_verdict {
	FLOOD_DROP,  /* its connection was closed: drop it unanswered */
	FLOOD_QUIET, /* run it now */
	FLOOD_BUSY,  /* its connection resets streams or has more calls open
			than the stream cap: run it after the quiet ones */
};

/*
 * A worker took call off the queue: fills *peer and *ticket and says what
 * to do. A call not dropped counts as open until flood_guard_release, and
 * as unanswered until flood_guard_answered, its release, or
 * FLOOD_DEADLINE_SLACK_MS before deadline_ms (CLOCK_MONOTONIC ms, 0 for
 * none; struct flood_ticket). May close the connection (this call is
 * still admitted; the later ones are dropped). call_bytes: what the call
 * may have taken on the wire, its headers and message with their
 * framing, at least (its connection's credit against the bytes
 * received).
 */
/* A connection's counters at one look of the watcher (channelz.h). */
struct flood_stall_look {
	uint64_t started, ended; /* streams */
	uint64_t received;	 /* request messages */
};

/*
 * Streams of a connection held in core without being served: of the
 * streams started by an earlier look (started_then), those not ended by
 * this look (now) and not among the `taken` calls the workers hold; with
 * without_request_only, no more than started_then less the streams that
 * sent a request by now (its requests received, less more_requests: those
 * streaming calls read past their first; the short rule above).
 */
uint64_t flood_stall_held(uint64_t started_then,
			  const struct flood_stall_look *now, uint64_t taken,
			  uint64_t more_requests, bool without_request_only);

/*
 * A streaming call (reflection) of peer read another request past its
 * first: the short held-streams rule does not count it as a stream's.
 * Counted per peer until its next connection (flood_guard_accepted).
 */
void flood_guard_more_requests(struct flood_guard *g,
			       const struct flood_peer *peer);

enum flood_verdict flood_guard_admit(struct flood_guard *g, grpc_call *call,
				     size_t call_bytes, int64_t deadline_ms,
				     struct flood_peer *peer,
				     struct flood_ticket *ticket);

/* True when the connection of an admitted call was closed since (the
 * caller drops it, then releases it). */
bool flood_guard_is_closed(struct flood_guard *g,
			   const struct flood_peer *peer);

/*
 * A connection from addr was accepted (accept_guard's watch). The guard
 * knows a connection by its peer, address and port, but the kernel hands
 * a client port out again as soon as it is free: a connection of a peer
 * closed within FLOOD_CLOSED_HOLD_MS may be another client, whose calls
 * would be dropped as the closed one's (its client saw CANCELLED). So the
 * closed mark is lifted and the peer's counts start again; calls still
 * queued from the closed connection then count against the new one, as
 * any calls of that peer do (a backlog past the cap closes it again, so
 * an attacker gains nothing by coming back from the same port). The
 * count of requests past a stream's first (flood_guard_more_requests)
 * starts again at every new connection of the peer, as channelz's counts
 * do.
 */
struct sockaddr;
void flood_guard_accepted(struct flood_guard *g, const struct sockaddr *addr,
			  unsigned addr_len);

/*
 * The server starts its answer to an admitted call: it no longer counts
 * as unanswered. A client that resets no stream never has more calls
 * unanswered than the stream cap (each such call's stream is still open
 * on the wire), so more than max_open of them close the connection. Calls
 * answered but not yet released (their answer's batch not yet completed
 * here) can pass the cap without any reset: the client opens the next
 * stream as each answer arrives. Counted like unanswered calls, they got
 * a client that kept every allowed stream busy (h2load -m100 at a cap of
 * 100, and the gateway under 1,000 clients) closed as a flooder; they now
 * close a connection only past FLOOD_OPEN_FACTOR x max_open. A flood's
 * reset streams still pass that: they complete late, while the
 * connection's transport is busy parsing the flood.
 */
void flood_guard_answered(struct flood_guard *g, const struct flood_peer *peer,
			  struct flood_ticket *ticket);

/*
 * An admitted call is over (answered or dropped). is_cancelled as
 * RECV_CLOSE_ON_SERVER said: cancelled before FLOOD_DEADLINE_SLACK_MS
 * ahead of its deadline, the client reset it (counted in metrics, and
 * towards making its connection busy).
 */
void flood_guard_release(struct flood_guard *g, const struct flood_peer *peer,
			 struct flood_ticket *ticket, bool is_cancelled);

/* "ipv4:127.0.0.1:4242", "ipv6:[::1]:4242" (or with %5B %5D) -> *peer;
 * false when s has another form. (Exposed for the unit test.) */
bool flood_peer_parse(const char *s, struct flood_peer *peer);

#endif
