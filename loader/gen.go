package loader

// Regenerate the BPF objects and their Go bindings (needs clang-14 and
// libbpf-dev; the output is committed, so building needs neither):
//
//	go generate ./loader
//
//go:generate go tool bpf2go -tags linux -cc clang-14 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target amd64,arm64 -type event -type watch_state -type send_slot -type send_level -type send_target memwatch ../bpf/memwatch.c -- -I../bpf
