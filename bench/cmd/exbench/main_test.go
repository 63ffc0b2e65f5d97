package main

import (
	"reflect"
	"testing"

	"github.com/exproxy/exproxy/bench/internal/suite"
)

func TestParseCandidates(t *testing.T) {
	tests := []struct {
		in   string
		want []suite.Candidate
		err  bool
	}{
		{in: "", want: []suite.Candidate{{Name: "exproxy"}}},
		{in: "/tmp/x", want: []suite.Candidate{{Name: "exproxy", Bin: "/tmp/x"}}},
		{in: "old=/tmp/a,new=build", want: []suite.Candidate{{Name: "old", Bin: "/tmp/a"}, {Name: "new"}}},
		{in: "old=/tmp/a, new=/tmp/b", want: []suite.Candidate{{Name: "old", Bin: "/tmp/a"}, {Name: "new", Bin: "/tmp/b"}}},
		{in: "a=/x,a=/y", err: true},
		{in: "direct=/x", err: true},
		{in: "a=build,b=build", err: true},
		{in: "a=/x,/y", err: true},
		{in: "=/x", err: true},
	}
	for _, tt := range tests {
		got, err := parseCandidates(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("parseCandidates(%q) error %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !tt.err && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseCandidates(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
