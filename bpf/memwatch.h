/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * The few kernel types memwatch.c reads, declared by hand. Only the fields
 * used are listed; preserve_access_index makes clang emit CO-RE relocations,
 * so the loader fixes every offset against the running kernel's BTF.
 */
#ifndef OOMHERO_MEMWATCH_H
#define OOMHERO_MEMWATCH_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

/* From the UAPI (stable numbers). */
enum bpf_map_type { BPF_MAP_TYPE_HASH = 1, BPF_MAP_TYPE_ARRAY = 2, BPF_MAP_TYPE_RINGBUF = 27 };
#define BPF_F_MMAPABLE (1U << 10)
#define BPF_NOEXIST 1 /* bpf_map_update_elem: create only */
#define EEXIST 17

#define __pra __attribute__((preserve_access_index))

struct kernfs_node { __u64 id; } __pra;
struct cgroup { struct kernfs_node *kn; } __pra;
struct cgroup_subsys_state { struct cgroup *cgroup; } __pra;
typedef struct { __s64 counter; } __pra atomic64_t;
typedef atomic64_t atomic_long_t;
struct page_counter { atomic_long_t usage; unsigned long max; } __pra;
struct mem_cgroup { struct cgroup_subsys_state css; struct page_counter memory; } __pra;
struct css_set { struct cgroup_subsys_state *subsys[1]; } __pra;
struct ns_common { unsigned int inum; } __pra;
struct pid_namespace { struct ns_common ns; } __pra;
struct upid { int nr; struct pid_namespace *ns; } __pra;
struct pid { unsigned int level; struct upid numbers[1]; } __pra;
typedef struct { int counter; } __pra atomic_t;
struct signal_struct { atomic_t live; } __pra;
struct sigaction { void *sa_handler; } __pra;
struct k_sigaction { struct sigaction sa; } __pra;
struct sighand_struct { struct k_sigaction action[64]; } __pra;
struct task_struct {
	struct css_set *cgroups;
	int pid;
	int tgid;
	struct pid *thread_pid;
	struct task_struct *group_leader;
	struct signal_struct *signal;
	struct sighand_struct *sighand;
	__u64 start_boottime;
	char comm[16];
} __pra;

/* Values are placeholders: CO-RE relocates them to the kernel's. */
enum node_stat_item { NR_INACTIVE_FILE = 2, NR_ISOLATED_FILE = 3, NR_ANON_MAPPED = 1, NR_ACTIVE_FILE = 4 };
enum pid_type { PIDTYPE_TGID = 1 };
enum cgroup_subsys_id { memory_cgrp_id = 1 };

#endif
