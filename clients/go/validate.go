package colo

import (
	"strconv"
	"strings"
)

// Checked here, before anything is sent, so that every client (C, C++, Go, Python) gives the same
// error, invalid, for the same bad input instead of whatever the agent's parser or the 64 KiB
// message limit would make of it.
const maxTarget = 512 // pod/<63>/<253>:<65535> is the longest meaningful target

// checkName: 1 to 63 of [a-z0-9.-], optionally "namespace/" before it, or "port/<n>" (1..65535,
// no leading zeros).
func checkName(op, name string) error {
	if strings.HasPrefix(name, "port/") {
		if !validPort(name[len("port/"):]) {
			return newError(op, name, ErrInvalid, "port/<n> takes a port from 1 to 65535 without leading zeros")
		}
		return nil
	}
	if len(name) == 0 || len(name) > 63 {
		return newError(op, shorten(name), ErrInvalid, "a name is 1 to 63 characters")
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return newError(op, name, ErrInvalid, "a name is made of a-z, 0-9, '.' and '-'")
		}
	}
	return nil
}

// checkTarget: the size and the characters any target can have (names, ip:port, [ipv6%zone]:port,
// service/... and pod/...); the agent checks the rest.
func checkTarget(target string) error {
	if len(target) == 0 || len(target) > maxTarget {
		return newError("dial", shorten(target), ErrInvalid, "a target is 1 to %d characters, not %d", maxTarget, len(target))
	}
	for _, r := range target {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-/:[]%_", r)) {
			return newError("dial", target, ErrInvalid, "a target is made of letters, digits and . - / : [ ] %% _, not %q", r)
		}
	}
	return nil
}

func validPort(s string) bool {
	if s == "" || s[0] == '0' || len(s) > 5 {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

func shorten(s string) string {
	if len(s) > 80 {
		return s[:40] + "..." + strconv.Itoa(len(s)) + " bytes"
	}
	return s
}
