package proxy

import (
	"bytes"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/exproxy/exproxy/proxy/resp"
)

// Doomed commands answered from their leader's reply (Follower): the
// session's read loop offers the commands of a batch that a Rewrite put
// in a group (offerGroup); the shared connection they are queued on sends
// the first of each group and leaves the others out of its write
// (queueGrouped), putting a waiter in their place in its FIFO; its reader
// keeps the leader's reply and answers those waiters from it, in their
// turn (answerFollowers). Redis's replies and the followers' answers thus
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
// leader (upConn.pos, session.upPos).

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
	id     []byte // the group's name: its arguments, each length-prefixed
	hash   uint64 // id's, compared first
	lead   []byte // the leader as the client sent it (its entry's resend copy)
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

// releaseGroup returns g to the pool once its last follower is answered.
func releaseGroup(g *group) {
	g.lead, g.follow = nil, nil
	g.id = g.id[:0]
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
		id0: id0, id1: len(s.groupIDs), hash: fnv1a(s.groupIDs[id0:])})
}

// fnv1a is the 64-bit FNV-1a hash of b: enough to tell most groups apart
// without comparing their names.
func fnv1a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
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
	cands := s.cands
	// last is where the session's latest command runs in the stream: a
	// follower runs where its leader does.
	last := s.upPos
	if s.upConn != c {
		last = 0
	}
	ci, at, run, sent, followers := 0, 0, 0, 0, 0
	for i := range batch {
		if batch[i].local != nil {
			continue
		}
		if ci < len(cands) && cands[ci].entry == i {
			cd := &cands[ci]
			ci++
			id := s.groupIDs[cd.id0:cd.id1]
			g := c.openGroup(id, cd.hash)
			if g != nil && g.pos >= last {
				c.pushRun(s, run)
				run = 0
				c.fifo = append(c.fifo, waiter{s: s, n: 1, grp: g, follows: true})
				g.followers.Add(1)
				c.out = append(c.out, data[at:cd.start]...)
				at = cd.end
				last = g.pos
				followers++
				continue
			}
			if g == nil && len(c.groups) < maxGroups {
				g = groupPool.Get().(*group)
				g.id, g.hash = append(g.id[:0], id...), cd.hash
				g.lead, g.follow = batch[i].resend, batch[i].rw.(Follower)
				g.followers.Store(0)
				c.pos++
				g.pos, last = c.pos, c.pos
				c.groups = append(c.groups, g)
				c.pushRun(s, run)
				run = 0
				c.fifo = append(c.fifo, waiter{s: s, n: 1, grp: g})
				sent++
				continue
			}
		}
		c.pos++
		last = c.pos
		run++
		sent++
	}
	s.upConn, s.upPos = c, last
	c.pushRun(s, run)
	c.out = append(c.out, data[at:]...)
	c.owed.Add(int64(sent))
	if followers > 0 {
		c.srv.stats.answeredByLeader.Add(int64(followers))
	}
	return nil
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
	args  [][]byte
	p     resp.CommandParser
}

// keep adds a chunk of a leader's reply, when followers wait for it.
func (fa *followerAnswers) keep(g *group, chunk []byte) {
	if g.followers.Load() > 0 {
		g.reply = append(g.reply, chunk...)
	}
}

// leaderDone notes that g's leader is answered.
func (fa *followerAnswers) leaderDone(g *group) {
	n := g.followers.Load()
	if n == 0 {
		releaseGroup(g)
		return
	}
	g.pending = n
	fa.owed += int(n)
}

// answer makes the reply of one of g's followers.
func (fa *followerAnswers) answer(g *group) []byte {
	_, args, _, err := fa.p.Parse(g.lead, fa.args[:0])
	if err != nil || len(args) == 0 {
		// Unreachable: the copy is of a command the proxy framed.
		args = args[:0]
	} else {
		fa.args = args[:0]
		args = args[1:]
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
	last := nc.upPos
	if nc.upConn != c {
		last = 0
	}
	cands := s.cands
	ci, from, followers := 0, 0, 0
	for i := range ws {
		w := &ws[i]
		bi := int(w.seq - seq0)
		for ci < len(cands) && cands[ci].entry < bi {
			ci++
		}
		if ci < len(cands) && cands[ci].entry == bi && w.fan == nil && !w.tx && !w.drop {
			cd := &cands[ci]
			id := s.groupIDs[cd.id0:cd.id1]
			g := c.openGroup(id, cd.hash)
			if g != nil && g.pos >= last {
				w.grp, w.follows = g, true
				g.followers.Add(1)
				c.out = append(c.out, data[from:at[i]]...)
				from = int(at[i]) + len(w.data)
				last = g.pos
				followers++
				continue
			}
			if g == nil && len(c.groups) < maxGroups {
				e := &s.batch[bi]
				g = groupPool.Get().(*group)
				g.id, g.hash = append(g.id[:0], id...), cd.hash
				g.lead, g.follow = e.resend, e.rw.(Follower)
				g.followers.Store(0)
				c.groups = append(c.groups, g)
				w.grp = g
			}
		}
		c.pos++
		last = c.pos
		if w.grp != nil {
			w.grp.pos = c.pos
		}
	}
	nc.upConn, nc.upPos = c, last
	c.tfifo = append(c.tfifo, ws...)
	c.owed.Add(int64(len(ws) - followers))
	c.out = append(c.out, data[from:]...)
	if followers > 0 {
		c.srv.stats.answeredByLeader.Add(int64(followers))
	}
	return nil
}
