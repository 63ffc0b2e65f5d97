//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// eventLoop needs epoll; elsewhere every client has a goroutine.
type eventLoop struct{}

func newEventLoop(*Server) (*eventLoop, error) { return nil, errors.New("no epoll on this system") }

func (*eventLoop) start()                                   {}
func (*eventLoop) unlisten()                                {}
func (*eventLoop) listen(net.Listener) (<-chan error, bool) { return nil, false }
func (*eventLoop) stop()                                    {}
func (*eventLoop) attach(*session) error                    { return errors.New("no event loop") }
func (*eventLoop) detach(*session)                          {}
func (*eventLoop) markDirty(*upConn)                        {}
func (*eventLoop) flushDirty()                              {}
func (*eventLoop) handoff()                                 {}
func (s *session) onReadable()                              {}
func (s *session) backFromWait(*eventLoop)                  {}
