# Counts the events of `go tool trace -d=parsed` by kind; goroutine and P
# state transitions by from->to and reason; n (-v n=...) is the number of
# requests in the trace's window.
/^M=/ {
	kind = $4
	if (kind == "StateTransition") {
		who = ($6 ~ /^GoID=/) ? "G" : "P"
		reason = $0
		sub(/.*Reason=/, "", reason)
		kind = who " " $7 " " reason
	} else if (kind == "RangeBegin" || kind == "RangeEnd" || kind == "Log" || kind == "Label") {
		name = $0
		sub(/.*Name=/, "", name)
		sub(/ Scope=.*/, "", name)
		kind = kind " " name
	} else if (kind == "Metric") {
		next
	}
	c[kind]++
	split($1, m, "=")
	ms[m[2]] = 1
}
END {
	for (k in c) printf "%10d  %8.4f /req  %s\n", c[k], c[k] / n, k
	nm = 0
	for (k in ms) nm++
	printf "%10d  %8s       distinct Ms (threads) that emitted events\n", nm, ""
}
