package proxy

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/exproxy/exproxy/proxy/resp"
)

// Doomed commands answered from their leader's reply (Follower): the
// session's read loop offers the commands of a batch that a Rewrite put
// in a group (offerGroup); the shared connection they are queued on sends
// the first of each group and leaves the others out of its write
// (queueGroupedLocked, queueTaggedGrouped; placeLocked decides), putting
// a waiter in their place in its FIFO; its reader keeps the leader's
// reply and answers those waiters from it, in their turn
// (followerAnswers). Redis's replies and the followers' answers thus
// reach every session in the order it sent its commands.
//
// A command joins a group only while the group's leader is still in the
// connection's unwritten buffer: then none of them has reached Redis, so
// "each follower ran right after the leader" is an order Redis could have
// chosen for commands of different clients, all in flight at once. The
// table of open groups is emptied whenever that buffer is taken for
// writing (endGroupsLocked). One client's commands must still run in the
// order it sent them, as on one connection to Redis: a command joins a
// group only if nothing its session sent before it runs after the
// leader (upConn.pos, streamPos).

// maxGroups bounds the open groups per connection, a linear scan each.
const maxGroups = 64

// groupCand is a command of the session's batch offered for a group.
type groupCand struct {
	entry      int // its index in s.batch
	start, end int // its bytes in s.upbuf
	id0, id1   int // its group's name in s.groupIDs
	hash       uint64
}

// group is a leader and the followers answered from its reply.
type group struct {
	id     []byte   // the group's name: its arguments, each length-prefixed
	hash   uint64   // id's, compared first
	lead   []byte   // the leader as the client sent it (its entry's resend copy)
	args   [][]byte // lead's arguments after the name, parsed once its reply is in
	follow Follower
	pos    uint64 // the leader's place in the connection's command stream
	// followers joined while the leader was unwritten: final by the time
	// its reply can come.
	followers atomic.Int32
	// The reader's: the leader's reply, kept when followers joined, and
	// how many of them are still to be answered.
	reply   []byte
	pending int32
}

var groupPool = sync.Pool{New: func() any { return new(group) }}

// groupSeed hashes group names.
var groupSeed = maphash.MakeSeed()

// streamPos is where a session's latest command runs in the command
// stream of one connection (upConn.pos): a follower runs where its
// leader does. Under that connection's mu.
type streamPos struct {
	c   *upConn
	pos uint64
}

// on is the position on c; 0 when the latest command went elsewhere.
func (p *streamPos) on(c *upConn) uint64 {
	if p.c != c {
		return 0
	}
	return p.pos
}

// releaseGroup returns g to the pool once its last follower is answered.
func releaseGroup(g *group) {
	g.lead, g.follow = nil, nil
	g.id = g.id[:0]
	clear(g.args)
	g.args = g.args[:0]
	if cap(g.reply) > 64<<10 {
		g.reply = nil
	} else {
		g.reply = g.reply[:0]
	}
	groupPool.Put(g)
}

// offerGroup records that the command just appended to s.upbuf from
// start on, whose entry is next in s.batch, may join a group: only
// outside a transaction, on shared connections, and for a command kept
// whole for a resend (a follower may have to be resent if its answer
// asks for it, as the leader's does).
func (s *session) offerGroup(rw Rewrite, args [][]byte, start int, resend []byte) {
	if s.conns.own != nil || s.tx.inMulti || resend == nil {
		return
	}
	if _, ok := rw.Reply.(Follower); !ok {
		return
	}
	id0 := len(s.groupIDs)
	for i := 1; i < len(args) && i < 16; i++ {
		if rw.Group&(1<<i) != 0 {
			s.groupIDs = binary.AppendUvarint(s.groupIDs, uint64(len(args[i])))
			s.groupIDs = append(s.groupIDs, args[i]...)
		}
	}
	s.cands = append(s.cands, groupCand{entry: len(s.batch), start: start, end: len(s.upbuf),
		id0: id0, id1: len(s.groupIDs), hash: maphash.Bytes(groupSeed, s.groupIDs[id0:])})
}

// clearCands forgets the batch's offers once it is sent.
func (s *session) clearCands() {
	s.cands = s.cands[:0]
	s.groupIDs = s.groupIDs[:0]
}

// queueGroupedLocked is queueLocked plus the append of data for a batch
// with offered commands, on a shared connection: an offered command
// whose group is open becomes a follower, left out of data; one whose
// group is not becomes a leader and opens it. c.mu is held.
func (c *upConn) queueGroupedLocked(s *session, batch []entry, data []byte) error {
	if c.dead {
		return errConnDead
	}
	if !s.q.push(batch) {
		return errSessionClosed
	}
	last := s.up.on(c)
	ci, at, run, sent, followers := 0, 0, 0, 0, 0
	for i := range batch {
		if batch[i].local != nil {
			continue
		}
		var g *group
		follows := false
		if ci < len(s.cands) && s.cands[ci].entry == i {
			g, follows = c.placeLocked(s, &s.cands[ci], &batch[i], last)
			ci++
		}
		if follows {
			c.pushRun(s, run)
			run = 0
			c.fifo = append(c.fifo, waiter{s: s, n: 1, grp: g, follows: true})
			c.out = append(c.out, data[at:s.cands[ci-1].start]...)
			at = s.cands[ci-1].end
			last = g.pos
			followers++
			continue
		}
		c.pos++
		last = c.pos
		sent++
		if g == nil {
			run++
			continue
		}
		g.pos = c.pos
		c.pushRun(s, run)
		run = 0
		c.fifo = append(c.fifo, waiter{s: s, n: 1, grp: g})
	}
	s.up = streamPos{c, last}
	c.pushRun(s, run)
	c.out = append(c.out, data[at:]...)
	c.owed.Add(int64(sent))
	if followers > 0 {
		c.srv.stats.answeredByLeader.Add(int64(followers))
	}
	return nil
}

// placeLocked decides what an offered command is in its group, last being
// where its session's latest command runs: a follower of the open group
// (follows: not sent), the leader of a group it opens (g), or neither
// (nil: sent as any command, because its session ran something after the
// open group's leader, or because too many groups are open). c.mu is
// held.
func (c *upConn) placeLocked(s *session, cd *groupCand, e *entry, last uint64) (g *group, follows bool) {
	id := s.groupIDs[cd.id0:cd.id1]
	if g = c.openGroup(id, cd.hash); g != nil {
		if g.pos < last {
			return nil, false
		}
		g.followers.Add(1)
		return g, true
	}
	if len(c.groups) >= maxGroups {
		return nil, false
	}
	g = groupPool.Get().(*group)
	g.id, g.hash = append(g.id[:0], id...), cd.hash
	g.lead, g.follow = e.resend, e.rw.(Follower)
	g.followers.Store(0)
	c.groups = append(c.groups, g)
	return g, false
}

// pushRun puts n more replies of s on the FIFO; c.mu is held.
func (c *upConn) pushRun(s *session, n int) {
	if n == 0 {
		return
	}
	if k := len(c.fifo); k > 0 && c.fifo[k-1].s == s && c.fifo[k-1].grp == nil {
		c.fifo[k-1].n += n
		return
	}
	c.fifo = append(c.fifo, waiter{s: s, n: n})
}

// openGroup finds the open group named id; c.mu is held.
func (c *upConn) openGroup(id []byte, hash uint64) *group {
	for _, g := range c.groups {
		if g.hash == hash && bytes.Equal(g.id, id) {
			return g
		}
	}
	return nil
}

// endGroupsLocked closes the open groups: the unwritten buffer, leaders
// included, is being taken for writing. c.mu is held.
func (c *upConn) endGroupsLocked() {
	if len(c.groups) > 0 {
		clear(c.groups)
		c.groups = c.groups[:0]
	}
}

// followerAnswers is the reader's side of the groups.
type followerAnswers struct {
	owed  int     // followers whose turn has not come yet
	tr    tagRead // a cluster follower's answer, read as a reply of its own
	reply []byte
	p     resp.CommandParser
}

// keep adds a chunk of the leader's reply, when followers wait for it.
func (g *group) keep(chunk []byte) {
	if g.followers.Load() > 0 {
		g.reply = append(g.reply, chunk...)
	}
}

// leaderDone notes that g's leader is answered, and parses the leader
// once for all its followers.
func (fa *followerAnswers) leaderDone(g *group) {
	n := g.followers.Load()
	if n == 0 {
		releaseGroup(g)
		return
	}
	g.pending = n
	fa.owed += int(n)
	// The copy is of a command the proxy framed: it parses.
	if _, args, _, err := fa.p.Parse(g.lead, g.args[:0]); err == nil && len(args) > 0 {
		g.args = args
	}
}

// answer makes the reply of one of g's followers.
func (fa *followerAnswers) answer(g *group) []byte {
	var args [][]byte
	if len(g.args) > 0 {
		args = g.args[1:]
	}
	fa.reply = g.follow.Follow(fa.reply[:0], g.reply, args)
	if len(fa.reply) == 0 {
		// A Follower must answer; should one not, the follower gets what
		// the leader got rather than nothing.
		fa.reply = append(fa.reply, g.reply...)
	}
	if g.pending--; g.pending == 0 {
		releaseGroup(g)
	}
	fa.owed--
	return fa.reply
}

// queueTaggedGrouped is queueTagged for a batch with offered commands, on
// a shared connection to a cluster node: as queueGroupedLocked, with one
// tagWaiter per reply. at[i] is where ws[i]'s bytes start in data, seq0
// the sequence number of the batch's first entry.
func (c *upConn) queueTaggedGrouped(s *session, node int32, ws []tagWaiter, at []int32, data []byte, seq0 uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errConnDead
	}
	nc := s.cl.nodeConns(node)
	last := nc.up.on(c)
	ci, from, followers := 0, 0, 0
	for i := range ws {
		w := &ws[i]
		bi := int(w.seq - seq0)
		for ci < len(s.cands) && s.cands[ci].entry < bi {
			ci++
		}
		if ci < len(s.cands) && s.cands[ci].entry == bi && w.fan == nil && !w.tx && !w.drop {
			w.grp, w.follows = c.placeLocked(s, &s.cands[ci], &s.batch[bi], last)
		}
		if w.follows {
			c.out = append(c.out, data[from:at[i]]...)
			from = int(at[i]) + len(w.data)
			last = w.grp.pos
			followers++
			continue
		}
		c.pos++
		last = c.pos
		if w.grp != nil {
			w.grp.pos = c.pos
		}
	}
	nc.up = streamPos{c, last}
	c.tfifo = append(c.tfifo, ws...)
	c.owed.Add(int64(len(ws) - followers))
	c.out = append(c.out, data[from:]...)
	if followers > 0 {
		c.srv.stats.answeredByLeader.Add(int64(followers))
	}
	return nil
}
