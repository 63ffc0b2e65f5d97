// Package clients runs real client libraries other than go-redis —
// redis-py, ioredis and node-redis, in each RESP version the installed
// library speaks — against a real redis-server directly and through the
// proxy, and compares what the library lets the application see. Each
// library runs a small script (py/, node/) that prints one JSON object of
// outcomes; Redis, reached directly, is the oracle.
//
// The libraries are not Go modules: python3-redis comes from Debian
// (apt-get install python3-redis) and the node libraries from npm
// (npm ci in node/, versions locked in node/package-lock.json). A test
// whose library is missing skips with the command that installs it;
// .ci/run and make test install them.
package clients
