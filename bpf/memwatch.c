// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * memwatch: memory thresholds of watched cgroups decided on the kernel's
 * memory-charge path.
 *
 * One of three programs is loaded, whichever the kernel offers first:
 *   on_lruvec     tp_btf/mod_memcg_lruvec_state   sees charges and frees
 *   on_charge     fexit/try_charge_memcg           sees charges only
 *   on_lruvec_tp  tracepoint/memcg/mod_memcg_lruvec_state (classic)
 *
 * Each hit finds the cgroup id of the memcg and looks it up in a
 * direct-mapped array of watched cgroups; an unwatched id leaves at once.
 * A watched cgroup's metric (pages) is compared with its two thresholds; a
 * change of level is submitted to the ring buffer, and so
 * are progress events while usage is at or above the lower threshold, at least gap_ns
 * apart and only after `step` pages of change of usage or of new anonymous
 * (tp_btf) or charged (fexit) pages. A page-cache-heavy cgroup sitting at its
 * limit therefore submits nothing on tp_btf, while anonymous growth under a
 * flat usage still does. Records the ring buffer cannot take are counted in
 * `lost`; user space resynchronizes from cgroupfs when it grows.
 *
 * The metric is the kernel's usage less `offset`: user space seeds offset
 * from each cgroupfs reading (inactive file for the working set, usage less
 * anon for rss, 0 for usage), and on tp_btf the program follows every change
 * of the cgroup's inactive file LRU in it, so a working-set crossing is seen
 * on the page that makes it, whatever the page cache beside it. When a
 * confirming read disagrees, user space seeds the state again (level and
 * offset from the read): the next page charged judges afresh.
 */
#include "memwatch.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Level of a watched cgroup, by usage. */
enum level { LEVEL_OK = 0, LEVEL_LOW = 1, LEVEL_HIGH = 2 };

/* Kinds of event. */
enum kind {
	KIND_UP = 1,       /* level rose */
	KIND_DOWN = 2,     /* level fell */
	KIND_PROGRESS = 3, /* still at or above the lower threshold, moved */
	KIND_POKE = 4,     /* classic tracepoint: usage unknown here, read it */
	KIND_PROC = 5,     /* a process of the watched PID namespace forked, exec'ed or exited */
};

/* State of one watched cgroup. User space writes id..gap_ns and seeds the
 * rest; the program updates level..acc. */
struct watch_state {
	__u64 id;         /* cgroup id; 0: free slot */
	__u64 overflow;   /* slots: other watched ids with these low bits are in `overflow` */
	__u64 lo;         /* lower threshold, pages (usage >= lo: level 1) */
	__u64 hi;         /* upper threshold, pages (usage >= hi: level 2) */
	__u64 step;       /* pages of change worth a progress event */
	__u64 gap_ns;     /* minimum time between progress events */
	__u64 level;      /* level last submitted */
	__u64 last_pages; /* usage at the last submitted event */
	__u64 last_ns;    /* time of the last progress event */
	__u64 acc;        /* new anon / charged pages since the last event */
	__s64 offset;     /* pages of usage that are not the target's metric */
	__u64 flags;      /* WATCH_TRACK_INACTIVE */
	__s64 file;       /* pages on the file LRUs (and isolated from them), followed like offset */
};

/* The program keeps `offset` up to date with the inactive file LRU of the
 * cgroup (the metric is the working set, the attach point sees LRU moves).
 * File pages isolated from it count as inactive: reclaim takes them off the
 * list before it frees them, and the working set must not spike meanwhile. */
#define WATCH_TRACK_INACTIVE 1

/* One ring-buffer record. */
struct event {
	__u64 cgroup_id;
	__u64 ts_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u64 usage; /* pages */
	__u64 max;   /* pages */
	__u32 level;
	__u32 kind;
};

/* Watched cgroups, direct-mapped by the low bits of their id: an array
 * lookup is inlined by the verifier, so an unwatched cgroup costs one
 * address computation and two loads. */
#define SLOTS 4096
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct watch_state);
} slots SEC(".maps");

/* Watched cgroups whose slot another watched cgroup holds. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLOTS);
	__type(key, __u64);
	__type(value, struct watch_state);
} overflow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Never loaded (the loader deletes it): declares struct event in BTF for
 * bpf2go's -type without adding global data. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} event_type SEC(".maps");

/* Process events: a process of the PID namespace named by `ino` (its
 * inode, as stat(2) of /proc/self/ns/pid gives it) forked, exec'ed or
 * exited.
 * The process's PID in that namespace is put in `changed`, and one KIND_PROC
 * record is submitted and `pending` set; more changes submit nothing until
 * user space clears it, so a storm of processes costs one record per
 * rescan, and user space rereads only the PIDs in `changed` (it takes and
 * deletes them). A process counts when its PID namespace is that one or
 * below it (struct pid numbers[], pid_in): the sidecar sees the pod's
 * processes, the node agent (level 0) every process of the node. ino 0:
 * off. When `changed` is full, lost[1] counts the PIDs left out, and user
 * space scans every process instead. */
struct proc_watch {
	__u64 ino;
	__u64 pending;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct proc_watch);
} procs SEC(".maps");

#define CHANGED_MAX 16384
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CHANGED_MAX);
	__type(key, __u32);
	__type(value, __u32);
} changed SEC(".maps");

/* Entry 0: records dropped because the ring buffer was full. Entry 1: PIDs
 * of process events `changed` could not take. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");


/* Kernel sends. User space arms, for a watched cgroup, what entering each
 * level sends (the processes its agent vetted, with what must still hold of
 * each), and the program sends it itself on the crossing, before any ring
 * buffer record is read: bpf_send_signal_task (kernel 6.13). The slot array
 * is shared memory (mmap) with user space, and each level's `state` is the
 * token both sides take with a compare-and-swap: the side that takes an
 * armed level (ARMED -> TAKEN here, ARMED -> IDLE in user space) is the only
 * one that sends it, so a level is never sent twice. The program writes
 * which targets it signalled and when, then DONE; user space books that
 * and sets the level IDLE. A cgroup's slot is one of SEND_PROBE slots from
 * the one its id's low bits name, and names its id (0: free); a cgroup
 * whose SEND_PROBE slots others hold is left to user space. */
enum send_state { SEND_IDLE = 0, SEND_ARMED = 1, SEND_TAKEN = 2, SEND_DONE = 3 };

/* send_target.flags */
#define SEND_HANDLER 1 /* only while it has a handler for the signal */
#define SEND_COMM 2    /* only while its command (comm) is `comm` */

/* send_level.flags */
#define SEND_GATE_FILE 1 /* not while usage is within an eighth of the limit
			  * with a sixteenth of it or more on the file LRUs:
			  * reclaim can drain the inactive list and count page
			  * cache as working set for milliseconds there (user
			  * space rereads such a reading before it acts) */

#define SEND_TARGETS 4
#define SEND_SLOTS 1024
#define SEND_PROBE 8 /* the slots a cgroup's may be: (id + 0..7) mod SEND_SLOTS */
#define INIT_PID_NS_INO 0xEFFFFFFCULL /* PROC_PID_INIT_INO */

struct send_target {
	__s32 pid;     /* in the PID namespace `ns` of its slot */
	__u32 flags;
	__u64 start;   /* start time, clock ticks after boot (/proc/<pid>/stat field 22) */
	char comm[16];
};

struct send_level {
	__u32 state;
	__u32 sig;
	__u32 n;         /* targets in t[] */
	__u32 sent;      /* DONE: bit i set when target i was signalled */
	__u64 threshold; /* pages of the metric at which the level is entered */
	__u64 at_ns;     /* DONE: bpf_ktime_get_ns of the sends */
	__u64 flags;
	struct send_target t[SEND_TARGETS];
};

struct send_slot {
	__u64 id; /* cgroup id; the slot serves no other */
	__u64 ns; /* inode of the PID namespace of the targets' PIDs */
	struct send_level lv[2]; /* warning, critical */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SEND_SLOTS);
	__type(key, __u32);
	__type(value, struct send_slot);
} sends SEC(".maps");

extern struct task_struct *bpf_task_from_pid(__s32 pid) __ksym __weak;
extern struct task_struct *bpf_task_from_vpid(__s32 vpid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;
extern int bpf_send_signal_task(struct task_struct *task, int sig, enum pid_type type, __u64 value) __ksym __weak;

/* True when the kernel resolved sym (a __weak kfunc). */
#define ksym_exists(sym) (!!(sym))

static __always_inline struct watch_state *find(__u64 id)
{
	__u32 k = id & (SLOTS - 1);
	struct watch_state *w = bpf_map_lookup_elem(&slots, &k);
	if (!w)
		return 0;
	if (w->id == id)
		return w;
	if (!w->overflow)
		return 0;
	return bpf_map_lookup_elem(&overflow, &id);
}

/* Deepest PID namespace level looked at (the kernel allows 32; a pod's
 * processes are at 1, a node's at 0). */
#define MAX_LEVEL 8

/* The PID of task t's thread group in the namespace whose inode is ino, or 0 when t's
 * namespace is not that one or below it. User space knows its namespace's
 * inode but not its level (a procfs mounted in a container shows none
 * above its own), so the levels are tried from the top down. The index
 * into numbers[] is a variable: the reads are probe reads of computed
 * addresses. */
static __always_inline __u32 pid_in(struct task_struct *t, __u64 ino)
{
	struct pid *pid = BPF_CORE_READ(t, group_leader, thread_pid);
	if (!pid)
		return 0;
	__u32 top = BPF_CORE_READ(pid, level);
	__u64 base = (__u64)pid + bpf_core_field_offset(struct pid, numbers);
	__u64 size = bpf_core_type_size(struct upid);
	for (__u32 i = 0; i < MAX_LEVEL; i++) {
		if (i > top)
			return 0;
		__u64 up = base + i * size;
		int nr = 0;
		struct pid_namespace *ns = 0;
		if (bpf_probe_read_kernel(&ns, sizeof(ns), (void *)(up + bpf_core_field_offset(struct upid, ns))) || !ns)
			return 0;
		if (BPF_CORE_READ(ns, ns.inum) != ino)
			continue;
		if (bpf_probe_read_kernel(&nr, sizeof(nr), (void *)(up + bpf_core_field_offset(struct upid, nr))) || nr <= 0)
			return 0;
		return nr;
	}
	return 0;
}


/* The inode of the current task's PID namespace (the one its getpid()
 * answers in), 0 when it cannot be read. */
static __always_inline __u64 current_ns(void)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct pid *pid = BPF_CORE_READ(cur, thread_pid);
	if (!pid)
		return 0;
	__u32 level = BPF_CORE_READ(pid, level);
	if (level >= 32)
		return 0;
	__u64 up = (__u64)pid + bpf_core_field_offset(struct pid, numbers) + level * bpf_core_type_size(struct upid);
	struct pid_namespace *ns = 0;
	if (bpf_probe_read_kernel(&ns, sizeof(ns), (void *)(up + bpf_core_field_offset(struct upid, ns))) || !ns)
		return 0;
	return BPF_CORE_READ(ns, ns.inum);
}

/* Whether task t is still what user space vetted as target tg, for signal
 * sig: a process (thread-group leader) with the same start time (another
 * one is another process on a recycled PID), the same command (comm is
 * zero-padded, as user space pads the expected one), a handler for sig. */
static __always_inline int still(struct task_struct *t, struct send_target *tg, __u32 sig)
{
	if (t->pid != t->tgid)
		return 0;
	/* /proc/<pid>/stat's start time: nsec_to_clock_t, USER_HZ 100. */
	if (t->start_boottime / 10000000ULL != tg->start)
		return 0;
	if (tg->flags & SEND_COMM) {
		__u64 comm[2];
		if (bpf_probe_read_kernel(comm, sizeof(comm), &t->comm))
			return 0;
		if (comm[0] != *(__u64 *)&tg->comm[0] || comm[1] != *(__u64 *)&tg->comm[8])
			return 0;
	}
	if (tg->flags & SEND_HANDLER) {
		if (sig < 1 || sig > 64)
			return 0;
		struct sighand_struct *sh = BPF_CORE_READ(t, sighand);
		if (!sh)
			return 0;
		__u64 at = (__u64)sh + bpf_core_field_offset(struct sighand_struct, action) +
			   (sig - 1) * bpf_core_type_size(struct k_sigaction) +
			   bpf_core_field_offset(struct k_sigaction, sa.sa_handler);
		__u64 handler = 0;
		if (bpf_probe_read_kernel(&handler, sizeof(handler), (void *)at))
			return 0;
		if (handler <= 1) /* SIG_DFL, SIG_IGN */
			return 0;
	}
	return 1;
}

/* Signals target tg; true when the signal was sent (or queued to go on the
 * next interrupt-enabled moment of this CPU). */
static __always_inline int send_one(struct send_target *tg, __u32 sig, int init)
{
	struct task_struct *t;
	if (init)
		t = bpf_task_from_pid(tg->pid);
	else
		t = bpf_task_from_vpid(tg->pid); /* current's namespace: kernel_send checked it */
	if (!t)
		return 0;
	int ok = still(t, tg, sig) &&
		 bpf_send_signal_task(t, sig, bpf_core_enum_value(enum pid_type, PIDTYPE_TGID), 0) == 0;
	bpf_task_release(t);
	return ok;
}

/* Sends what user space armed for the levels the cgroup just entered
 * (above old, up to level). */
static __always_inline void kernel_send(struct watch_state *w, __u64 id, __u64 metric,
					__u64 usage, __u64 max, __u64 old, __u64 level)
{
	if (!ksym_exists(bpf_send_signal_task) || !ksym_exists(bpf_task_from_pid) ||
	    !ksym_exists(bpf_task_from_vpid) || !ksym_exists(bpf_task_release))
		return;
	struct send_slot *s = NULL;
	for (__u32 i = 0; i < SEND_PROBE; i++) {
		__u32 k = (id + i) & (SEND_SLOTS - 1);
		s = bpf_map_lookup_elem(&sends, &k);
		if (s && s->id == id)
			break;
		s = NULL;
	}
	if (!s)
		return;
	/* The targets' PIDs are numbered in namespace ns: the host's, or
	 * (a sidecar) the pod's, where they are looked up in the charging
	 * task's namespace when it is that one (the pod's own processes). */
	__u64 ns = s->ns;
	int init = ns == INIT_PID_NS_INO;
	if (!init && current_ns() != ns)
		return;
	for (__u32 l = 0; l < 2; l++) {
		if (l + 1 <= old || l + 1 > level)
			continue;
		struct send_level *lv = &s->lv[l];
		if (lv->state != SEND_ARMED || metric < lv->threshold)
			continue;
		if ((lv->flags & SEND_GATE_FILE) && usage >= max - max / 8 &&
		    w->file > 0 && (__u64)w->file * 16 >= max)
			continue;
		if (__sync_val_compare_and_swap(&lv->state, SEND_ARMED, SEND_TAKEN) != SEND_ARMED)
			continue;
		/* User space gives a slot to another cgroup only while no level
		 * is armed, and writes the id before it arms one: a level taken
		 * under another id was armed for that cgroup. */
		if (s->id != id) {
			__sync_lock_test_and_set(&lv->state, SEND_ARMED);
			continue;
		}
		__u32 sig = lv->sig, n = lv->n, sent = 0;
		for (__u32 i = 0; i < SEND_TARGETS; i++) {
			if (i < n && send_one(&lv->t[i], sig, init))
				sent |= 1U << i;
		}
		lv->sent = sent;
		lv->at_ns = bpf_ktime_get_ns();
		__sync_lock_test_and_set(&lv->state, SEND_DONE);
	}
}

static __always_inline void submit(__u64 id, __u64 ts, __u64 usage, __u64 max,
				   __u32 level, __u32 kind)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 k = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &k);
		if (n)
			__sync_fetch_and_add(n, 1);
		return;
	}
	e->cgroup_id = id;
	e->ts_ns = ts;
	e->usage = usage;
	e->max = max;
	e->level = level;
	e->kind = kind;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void judge(struct watch_state *w, __u64 id, __u64 usage,
				  __u64 max, __u64 added, int can_send)
{
	__s64 est = (__s64)usage - w->offset;
	__u64 metric = est > 0 ? (__u64)est : 0;
	__u64 level = metric >= w->hi ? LEVEL_HIGH : metric >= w->lo ? LEVEL_LOW : LEVEL_OK;

	if (level != w->level) {
		/* Several CPUs may see the crossing: the one that swaps reports. */
		__u64 old = __sync_lock_test_and_set(&w->level, level);
		if (old == level)
			return;
		if (can_send && level > old)
			kernel_send(w, id, metric, usage, max, old, level);
		__u64 now = bpf_ktime_get_ns();
		w->last_pages = usage;
		w->last_ns = now;
		w->acc = 0;
		submit(id, now, usage, max, level, level > old ? KIND_UP : KIND_DOWN);
		return;
	}
	/* Progress while usage is at or above the lower threshold, whatever
	 * the metric says: where the offset is not followed (fexit) or was
	 * seeded stale, reclaim can raise the metric under a flat usage, and
	 * the charges that cause it are what reports it. */
	if (level == LEVEL_OK && usage < w->lo)
		return;
	if (added)
		w->acc += added;
	__u64 last = w->last_pages;
	__u64 moved = usage > last ? usage - last : last - usage;
	if (moved < w->step && w->acc < w->step)
		return;
	__u64 now = bpf_ktime_get_ns();
	__u64 then = w->last_ns;
	if (now - then < w->gap_ns)
		return;
	if (__sync_val_compare_and_swap(&w->last_ns, then, now) != then)
		return;
	w->last_pages = usage;
	w->acc = 0;
	submit(id, now, usage, max, level, KIND_PROGRESS);
}

static __always_inline void on_memcg(struct mem_cgroup *memcg, __u64 added, int can_send)
{
	__u64 id = memcg->css.cgroup->kn->id;
	struct watch_state *w = find(id);
	if (!w)
		return;
	judge(w, id, memcg->memory.usage.counter, memcg->memory.max, added, can_send);
}

/* mod_memcg_lruvec_state(struct mem_cgroup *memcg, int item, int val) */
SEC("tp_btf/mod_memcg_lruvec_state")
int on_lruvec(__u64 *ctx)
{
	struct mem_cgroup *memcg = (void *)ctx[0];
	int item = (int)ctx[1];
	int val = (int)ctx[2];
	__u64 added = 0;

	if (item == bpf_core_enum_value(enum node_stat_item, NR_ANON_MAPPED) && val > 0)
		added = val;
	int inactive = item == bpf_core_enum_value(enum node_stat_item, NR_INACTIVE_FILE) ||
		       item == bpf_core_enum_value(enum node_stat_item, NR_ISOLATED_FILE);
	if (inactive || item == bpf_core_enum_value(enum node_stat_item, NR_ACTIVE_FILE)) {
		__u64 id = memcg->css.cgroup->kn->id;
		struct watch_state *w = find(id);
		if (!w)
			return 0;
		if (w->flags & WATCH_TRACK_INACTIVE) {
			if (inactive)
				__sync_fetch_and_add(&w->offset, (__s64)val);
			__sync_fetch_and_add(&w->file, (__s64)val);
		}
		judge(w, id, memcg->memory.usage.counter, memcg->memory.max, 0, 1);
		return 0;
	}
	on_memcg(memcg, added, 1);
	return 0;
}

/* try_charge_memcg(struct mem_cgroup *memcg, gfp_t gfp_mask,
 *                  unsigned int nr_pages) returns int */
SEC("fexit/try_charge_memcg")
int on_charge(__u64 *ctx)
{
	struct mem_cgroup *memcg = (void *)ctx[0];
	__u32 nr_pages = (__u32)ctx[2];

	on_memcg(memcg, nr_pages, 0);
	return 0;
}

/* Record of the classic tracepoint memcg/mod_memcg_lruvec_state. */
struct lruvec_tp {
	__u64 common;
	__u64 id;
	int item;
	int val;
};

SEC("tracepoint/memcg/mod_memcg_lruvec_state")
int on_lruvec_tp(struct lruvec_tp *ctx)
{
	__u64 id = ctx->id;
	struct watch_state *w = find(id);
	if (!w)
		return 0;
	__u64 added = 0;
	if (ctx->item == bpf_core_enum_value(enum node_stat_item, NR_ANON_MAPPED) && ctx->val > 0)
		added = ctx->val;
	if ((ctx->item == bpf_core_enum_value(enum node_stat_item, NR_INACTIVE_FILE) ||
	     ctx->item == bpf_core_enum_value(enum node_stat_item, NR_ISOLATED_FILE)) &&
	    (w->flags & WATCH_TRACK_INACTIVE))
		__sync_fetch_and_add(&w->offset, (__s64)ctx->val);

	/* The record carries no memcg: use the current task's when it is the
	 * same cgroup (the usual case when a task charges its own memory).
	 * The verifier types subsys[] as a css, not a mem_cgroup, so the
	 * memcg's fields are read with probe reads here. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct mem_cgroup *memcg = (void *)task->cgroups->subsys[
		bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id)];
	if (memcg && memcg->css.cgroup->kn->id == id) {
		__u64 usage = BPF_CORE_READ(memcg, memory.usage.counter);
		__u64 max = BPF_CORE_READ(memcg, memory.max);
		judge(w, id, usage, max, added, 0);
		return 0;
	}
	/* Someone else (reclaim, a task of another cgroup) changed it: ask
	 * user space to read cgroupfs, at most once per gap. */
	__u64 now = bpf_ktime_get_ns();
	__u64 then = w->last_ns;
	if (now - then < w->gap_ns)
		return 0;
	if (__sync_val_compare_and_swap(&w->last_ns, then, now) != then)
		return 0;
	submit(id, now, 0, 0, w->level, KIND_POKE);
	return 0;
}

static __always_inline void proc_changed(struct task_struct *t)
{
	__u32 k = 0;
	struct proc_watch *p = bpf_map_lookup_elem(&procs, &k);
	if (!p || !p->ino)
		return;
	__u32 pid = pid_in(t, p->ino);
	if (!pid)
		return;
	if (!bpf_map_lookup_elem(&changed, &pid)) {
		__u32 one = 1;
		long err = bpf_map_update_elem(&changed, &pid, &one, BPF_NOEXIST);
		if (err && err != -EEXIST) {
			__u32 k1 = 1;
			__u64 *n = bpf_map_lookup_elem(&lost, &k1);
			if (n)
				__sync_fetch_and_add(n, 1);
		}
	}
	if (p->pending || __sync_lock_test_and_set(&p->pending, 1))
		return;
	submit(0, bpf_ktime_get_ns(), 0, 0, 0, KIND_PROC);
}

/* sched_process_fork(struct task_struct *parent, struct task_struct *child),
 * in the parent: new threads are no new process. */
SEC("tp_btf/sched_process_fork")
int on_fork(__u64 *ctx)
{
	struct task_struct *child = (void *)ctx[1];
	if (child->pid != child->tgid)
		return 0;
	proc_changed(child);
	return 0;
}

/* sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) */
SEC("tp_btf/sched_process_exec")
int on_exec(__u64 *ctx)
{
	proc_changed(bpf_get_current_task_btf());
	return 0;
}

/* sched_process_exit(struct task_struct *p, ...): the process goes with
 * its leader, or with its last thread (signal->live, decremented in
 * do_exit before the tracepoint) when the leader left first. */
SEC("tp_btf/sched_process_exit")
int on_exit(__u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	if (t->pid != t->tgid && BPF_CORE_READ(t, signal, live.counter) != 0)
		return 0;
	proc_changed(t);
	return 0;
}
