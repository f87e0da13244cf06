package procstat

import (
	"os"
	"strconv"
	"testing"
)

func TestParseCountsFieldsFromTheLastParenthesis(t *testing.T) {
	t.Parallel()
	line := "4242 (a (tricky) name) S 17 4242 4242 0 -1 4194560 300 0 0 0 12 34 0 0 20 0 9 0 123456 7340032 1536 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	s, err := Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	if s.PPID != 17 || s.UTime != 12 || s.STime != 34 || s.VSize != 7340032 || s.RSS != 1536 {
		t.Fatalf("%+v", s)
	}
	if _, err := Parse("4242 no parenthesis"); err == nil {
		t.Fatal("a line without the command parsed")
	}
	if _, err := Parse("4242 (x) S 1 2"); err == nil {
		t.Fatal("a short line parsed")
	}
}

func TestReadSelf(t *testing.T) {
	t.Parallel()
	s, err := Read("self")
	if err != nil {
		t.Fatal(err)
	}
	if s.PPID != os.Getppid() || s.RSS == 0 || s.VSize == 0 {
		t.Fatalf("self: %+v, parent %s", s, strconv.Itoa(os.Getppid()))
	}
}
