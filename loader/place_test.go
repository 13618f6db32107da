//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"encoding/binary"
	"maps"
	"strings"
	"testing"
)

// These tests need neither root nor BPF.

func TestPlace(t *testing.T) {
	const s = slotCount
	type p = placement
	slot, slotOver, over, polled := p{inSlot: true}, p{inSlot: true, overflow: true}, p{}, p{polled: true}
	for _, tc := range []struct {
		name string
		ids  []uint64
		cap  int
		want map[uint64]placement
	}{
		{"none", nil, s, map[uint64]placement{}},
		{"distinct slots", []uint64{1, 2, s - 1}, s, map[uint64]placement{1: slot, 2: slot, s - 1: slot}},
		{"lowest id holds the slot", []uint64{5 + s, 5}, s, map[uint64]placement{5: slotOver, 5 + s: over}},
		{"three in one slot", []uint64{7 + 2*s, 7, 7 + s}, s, map[uint64]placement{7: slotOver, 7 + s: over, 7 + 2*s: over}},
		{"duplicates count once", []uint64{9, 9, 9 + s, 9 + s}, s, map[uint64]placement{9: slotOver, 9 + s: over}},
		{"overflow full: the highest ids are polled", []uint64{3, 3 + s, 3 + 2*s, 4, 4 + s}, 2,
			map[uint64]placement{3: slotOver, 3 + s: over, 3 + 2*s: polled, 4: slotOver, 4 + s: over}},
		{"no overflow room at all", []uint64{3, 3 + s}, 0, map[uint64]placement{3: slot, 3 + s: polled}},
		{"slot 0", []uint64{0 + s, 2 * s}, s, map[uint64]placement{s: slotOver, 2 * s: over}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := place(tc.ids, tc.cap)
			if !maps.Equal(got, tc.want) {
				t.Errorf("place(%v, %d) = %v, want %v", tc.ids, tc.cap, got, tc.want)
			}
		})
	}
}

// TestPlaceFull fills every slot and the overflow map: what does not fit is
// polled, nothing is lost, and each slot has one owner.
func TestPlaceFull(t *testing.T) {
	var ids []uint64
	for i := range uint64(3*slotCount + 10) {
		ids = append(ids, 1000+i)
	}
	got := place(ids, slotCount)
	var inSlot, inOverflow, polled int
	owners := map[uint32]uint64{}
	for id, p := range got {
		switch {
		case p.polled:
			polled++
		case p.inSlot:
			inSlot++
			if o, dup := owners[slotOf(id)]; dup {
				t.Fatalf("slot %d held by %d and %d", slotOf(id), o, id)
			}
			owners[slotOf(id)] = id
		default:
			inOverflow++
		}
	}
	if len(got) != len(ids) || inSlot != slotCount || inOverflow != slotCount || polled != slotCount+10 {
		t.Errorf("%d placed: %d in slots, %d in overflow, %d polled; want %d: %d, %d, %d",
			len(got), inSlot, inOverflow, polled, len(ids), slotCount, slotCount, slotCount+10)
	}
}

func record(id, ts, usage, max uint64, level, kind uint32) []byte {
	b := make([]byte, recordSize)
	binary.NativeEndian.PutUint64(b[0:], id)
	binary.NativeEndian.PutUint64(b[8:], ts)
	binary.NativeEndian.PutUint64(b[16:], usage)
	binary.NativeEndian.PutUint64(b[24:], max)
	binary.NativeEndian.PutUint32(b[32:], level)
	binary.NativeEndian.PutUint32(b[36:], kind)
	return b
}

func TestDecodeRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want memwatchEvent
		err  string
	}{
		{"up", record(42, 1000, 300, 512, 1, kindUp), memwatchEvent{CgroupId: 42, TsNs: 1000, Usage: 300, Max: 512, Level: 1, Kind: kindUp}, ""},
		{"down", record(42, 2000, 10, 512, 0, kindDown), memwatchEvent{CgroupId: 42, TsNs: 2000, Usage: 10, Max: 512, Level: 0, Kind: kindDown}, ""},
		{"progress", record(7, 1, 2, 3, 2, kindProgress), memwatchEvent{CgroupId: 7, TsNs: 1, Usage: 2, Max: 3, Level: 2, Kind: kindProgress}, ""},
		{"poke carries no usage", record(7, 1, 0, 0, 1, kindPoke), memwatchEvent{CgroupId: 7, TsNs: 1, Level: 1, Kind: kindPoke}, ""},
		{"empty", nil, memwatchEvent{}, "0 bytes"},
		{"short", record(1, 1, 1, 1, 1, kindUp)[:39], memwatchEvent{}, "39 bytes"},
		{"long", append(record(1, 1, 1, 1, 1, kindUp), 0), memwatchEvent{}, "41 bytes"},
		{"kind 0", record(1, 1, 1, 1, 1, 0), memwatchEvent{}, "unknown kind 0"},
		{"process event", record(0, 9, 0, 0, 0, kindProc), memwatchEvent{TsNs: 9, Kind: kindProc}, ""},
		{"kind 6", record(1, 1, 1, 1, 1, 6), memwatchEvent{}, "unknown kind 6"},
		{"level 3", record(1, 1, 1, 1, 3, kindUp), memwatchEvent{}, "level 3"},
		{"cgroup 0", record(0, 1, 1, 1, 1, kindUp), memwatchEvent{}, "cgroup id 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRecord(tc.b)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one saying %q", err, tc.err)
			case got != tc.want:
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzDecode: any bytes decode to a valid event or an error, never a panic,
// and a valid event encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(record(42, 1000, 300, 512, 1, kindUp))
	f.Add(record(42, 2000, 10, 512, 0, kindDown))
	f.Add(record(1<<40, 1<<62, 1<<50, 1<<50, 2, kindProgress))
	f.Add(record(3, 1, 0, 0, 1, kindPoke))
	f.Add(record(0, 1, 0, 0, 0, kindProc))
	f.Add([]byte{})
	f.Add(make([]byte, 39))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeRecord(b)
		if err != nil {
			return
		}
		if ev.Kind < kindUp || ev.Kind > kindProc || ev.Level > 2 || (ev.CgroupId == 0 && ev.Kind != kindProc) {
			t.Fatalf("accepted %+v", ev)
		}
		if again := record(ev.CgroupId, ev.TsNs, ev.Usage, ev.Max, ev.Level, ev.Kind); string(again) != string(b) {
			t.Fatalf("%x decoded to %+v, which encodes to %x", b, ev, again)
		}
	})
}
