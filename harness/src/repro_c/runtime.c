/* ====================================================================================
 * Runtime: what ccwrig's guest agent does for each operation, as plain syscalls.
 * Each op_*() function below is one scenario operation; its comment names the agent
 * code it mirrors. Nothing here depends on the scenario: that is at the end of the file.
 * ==================================================================================== */

#define MAX_HANDLES 64
#define MAX_MDEVS 64
#define MAX_TOUCHED 64
#define MAX_REGIONS 8

enum part { PART_DEVICE, PART_GROUP, PART_CONTAINER, NPARTS };
static const char *const part_name[NPARTS] = { "device", "group", "container" };

enum via { VIA_GROUP, VIA_IOMMUFD };
enum on_request { ON_REQUEST_CLOSE, ON_REQUEST_RESET, ON_REQUEST_IGNORE };
enum region_kind { REGION_IO, REGION_ASYNC, REGION_SCHIB, REGION_CRW };
static const char *const region_name[] = { "io", "async", "schib", "crw" };

enum op_kind {
	OP_BARRIER,
	OP_LIST_SUBCHANNELS,
	OP_BIND,
	OP_UNBIND,
	OP_RESCAN,
	OP_MDEV_CREATE,
	OP_MDEV_REMOVE,
	OP_AVAILABLE_INSTANCES,
	OP_OPEN,
	OP_CLOSE,
	OP_GET_INFO,
	OP_CONSUMER,
	OP_RESET,
	OP_AWAIT_REQUEST,
	OP_DMA_UNMAP,
	OP_SET_IRQ,
	OP_IO,
	OP_IO_STALL,
	OP_IO_RELEASE,
	OP_HALT,
	OP_CLEAR,
	OP_READ_REGION,
	OP_BAD_INPUT,
	OP_REGION_ACCESS,
	OP_IOAS,
	OP_CHP,
	OP_ONLINE,
	OP_SLEEP,
	OP_SNAPSHOT,
	OP_MARK,
	OP_SYSRQ,
	OP_KMEMLEAK,
	OP_GCOV,
	OP_EXEC,
	OP_CLEANUP,
	OP_HOST, /* done by the hypervisor: --host-cmd or the operator */
};

enum irq_action { IRQ_REGISTER, IRQ_REMOVE, IRQ_SIGNAL, IRQ_SIGNAL_BOOL, IRQ_MASK, IRQ_UNMASK };

enum bad_input {
	BAD_IO_REGION_OFFSET,
	BAD_IO_REGION_SHORT,
	BAD_UNMAPPED_CPA,
	BAD_FORMAT0_ORB,
	BAD_ASYNC_BAD_COMMAND,
	BAD_REGION_INDEX,
	BAD_ARGSZ_SHORT,
	BAD_IRQ_INDEX_PAST_LAST,
};

enum access { ACCESS_READ, ACCESS_WRITE, ACCESS_MMAP };
static const char *const access_name[] = { "read", "write", "mmap" };
enum ioas_action { IOAS_DETACH, IOAS_ATTACH, IOAS_ATTACH_NEW, IOAS_DESTROY };
enum chp_action { CHP_VARY_OFF, CHP_VARY_ON, CHP_CONFIGURE, CHP_DECONFIGURE };

/* One step of the scenario: an operation and its operands (unused ones stay 0/NULL). */
struct step {
	enum op_kind op;
	const char *what;   /* the step as ccwrig prints it, e.g. "reset handle=d" */
	int line;           /* line in the scenario file, 0 if generated */
	const char *label;
	const char *expect; /* accepted outcomes: "ok", "EINVAL", "blocked", "failed", "any" */
	unsigned deadline_ms;
	const char *barrier;
	const char *schid, *driver, *mdev, *uuid, *handle, *text, *device, *host_op;
	enum via via;
	enum on_request on_request;
	enum region_kind region;
	enum bad_input bad;
	enum access access;      /* region_access */
	uint64_t offset, size;   /* region_access: size 0 means to the region's end */
	unsigned threads;        /* region_access */
	enum ioas_action ioas;
	const char *chpid;
	enum chp_action chp;
	unsigned long hold_ms;   /* chp vary_off: how long the path stays off */
	int online;
	unsigned count;
	int suspend;
	int remap;
	int kmemleak_clear;
	unsigned fail_nth; /* make the op thread's nth fault point fail (0: none) */
	int gcov_reset;
	uint32_t irq;       /* set_irq: VFIO_CCW_*_IRQ_INDEX */
	enum irq_action irq_action;
	/* sleep: duration; io: how long to wait for each interrupt; cleanup: how long to wait
	 * for each given-back device to be online */
	unsigned long ms;
	enum part order[NPARTS];
	int norder;
	/* io with its own channel program: the bytes for DMA offset PROG_CCW_OFF, the ORB's
	 * word 1 and channel program address, the SCSW's word 0 */
	const unsigned char *prog;
	unsigned prog_len;
	uint32_t prog_w1, prog_cpa, prog_scsw;
	const char *const *argv;
	char key;
};

struct actor {
	const char *name;
	const struct step *steps;
	int nsteps;
	/* [rep * nsteps + index]: the delay before a step that follows a barrier, or NULL */
	const unsigned int *jitter_ms;
};

/* snprintf that truncates silently: every buffer here is sized for its use, and a
 * longer name would only be cut in a message. */
static int xsnprintf(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	int r;
	va_start(ap, fmt);
	r = vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return r;
}

/* ---- results ---------------------------------------------------------------------- */

enum res_kind { RES_OK, RES_ERRNO, RES_FAILED, RES_BLOCKED };

struct res {
	enum res_kind kind;
	int err;
	char call[128];
	char info[1024];
};

static const char *errno_str(int e)
{
	static __thread char buf[16];
	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (errno_names[i].code == e)
			return errno_names[i].name;
	xsnprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/* A system call failed: the step's outcome is its errno (a kernel verdict). */
static int sys_fail(struct res *r, int err, const char *fmt, ...)
{
	va_list ap;
	r->kind = RES_ERRNO;
	r->err = err;
	va_start(ap, fmt);
	vsnprintf(r->call, sizeof(r->call), fmt, ap);
	va_end(ap);
	return -1;
}

/* The program could not do what was asked (unknown handle, closed fd): not a kernel verdict. */
static int op_fail(struct res *r, const char *fmt, ...)
{
	va_list ap;
	r->kind = RES_FAILED;
	va_start(ap, fmt);
	vsnprintf(r->call, sizeof(r->call), fmt, ap);
	va_end(ap);
	return -1;
}

static void note(struct res *r, const char *fmt, ...)
{
	size_t n = strlen(r->info);
	va_list ap;
	if (n + 2 >= sizeof(r->info))
		return;
	if (n)
		r->info[n++] = ' ';
	va_start(ap, fmt);
	vsnprintf(r->info + n, sizeof(r->info) - n, fmt, ap);
	va_end(ap);
}

static const char *res_short(const struct res *r)
{
	switch (r->kind) {
	case RES_OK: return "ok";
	case RES_ERRNO: return errno_str(r->err);
	case RES_BLOCKED: return "blocked";
	default: return "failed";
	}
}

/* Whether `got` is one of the space-separated outcomes in `expect`. */
static int expected(const char *expect, const char *got)
{
	const char *p = expect ? expect : "ok";
	size_t n = strlen(got);
	while (*p) {
		size_t w = strcspn(p, " ");
		if ((w == 3 && !strncmp(p, "any", 3)) || (w == n && !strncmp(p, got, n)))
			return 1;
		p += w;
		while (*p == ' ')
			p++;
	}
	return 0;
}

/* ---- output ----------------------------------------------------------------------- */

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static struct timespec t_start;
static int kmsg_fd = -1; /* --kmsg: every line also goes to the kernel log */
static int unexpected;

static double elapsed(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t_start.tv_sec) + (t.tv_nsec - t_start.tv_nsec) / 1e9;
}

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* One record in the kernel log, in one write() as /dev/kmsg wants it (not dprintf: glibc
 * attaches a FILE with lseek(SEEK_CUR), which /dev/kmsg refuses with EINVAL). */
static void kmsg(const char *fmt, ...)
{
	char rec[1100] = "<5>";
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(rec + 3, sizeof(rec) - 4, fmt, ap);
	va_end(ap);
	n = n < 0 ? 0 : (n > (int)sizeof(rec) - 5 ? (int)sizeof(rec) - 5 : n);
	rec[3 + n] = '\n';
	if (write(kmsg_fd, rec, 3 + n + 1) < 0) {
		/* the kernel log is a mirror: stdout has everything */
	}
}

static void say(const char *fmt, ...)
{
	char line[1600];
	va_list ap;
	int n = xsnprintf(line, sizeof(line), "[%9.3f] ", elapsed());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	printf("%s\n", line);
	fflush(stdout);
	if (kmsg_fd >= 0)
		kmsg("repro: %s", line + n);
	pthread_mutex_unlock(&out_lock);
}

/* One line per step result. A late result (of a step reported blocked) passes when it is
 * ok or an outcome the step allowed, as ccwrig judges it. */
static void report(const char *actor, int rep, int index, const struct step *s,
		   const struct res *r, long ms, int late)
{
	const char *got = res_short(r);
	int ok = expected(s->expect, got) || (late && r->kind == RES_OK);
	char why[200] = "";
	if (r->kind == RES_ERRNO)
		xsnprintf(why, sizeof(why), " (%d) from %s", r->err, r->call);
	else if (r->kind == RES_FAILED)
		xsnprintf(why, sizeof(why), ": %s", r->call);
	if (!ok)
		__atomic_add_fetch(&unexpected, 1, __ATOMIC_SEQ_CST);
	say("%s%s rep %d step %d (line %d) %s -> %s%s [%ld ms]%s%s", late ? "late: " : "", actor,
	    rep, index, s->line, s->what, got, why, ms, ok ? "" : "   <-- UNEXPECTED, expected ",
	    ok ? "" : (s->expect ? s->expect : "ok"));
	if (s->label)
		say("    label: %s", s->label);
	if (r->info[0])
		say("    %s", r->info);
}

/* ---- small syscall helpers -------------------------------------------------------- */

static void sleep_ms(unsigned long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&t, &t) && errno == EINTR)
		;
}

/* A sysfs attribute is written with one write(), as `echo` does. */
static int write_attr(struct res *r, const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return sys_fail(r, errno, "open %s", path);
	if (write(fd, value, strlen(value)) < 0) {
		int e = errno;
		close(fd);
		return sys_fail(r, e, "write %s", path);
	}
	close(fd);
	return 0;
}

/* Reads a small attribute, trimmed; "" when it cannot be read. */
static char *read_attr(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got = fd < 0 ? -1 : read(fd, buf, n - 1);
	if (fd >= 0)
		close(fd);
	buf[got > 0 ? got : 0] = 0;
	while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == ' '))
		buf[--got] = 0;
	return buf;
}

/* The last path component of a symlink's target ("" if none). */
static char *link_name(const char *path, char *buf, size_t n)
{
	char t[512];
	ssize_t got = readlink(path, t, sizeof(t) - 1);
	buf[0] = 0;
	if (got > 0) {
		t[got] = 0;
		xsnprintf(buf, n, "%s", strrchr(t, '/') ? strrchr(t, '/') + 1 : t);
	}
	return buf;
}

static unsigned long eventfd_take(int efd)
{
	uint64_t v = 0;
	return read(efd, &v, 8) == 8 ? v : 0;
}

/* 1 if fd became readable within ms, 0 if not, -1 on error. */
static int poll_in(int fd, long ms)
{
	long end = now_ms() + ms;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long left = end - now_ms();
		int n = poll(&p, 1, left > 0 ? (int)left : 0);
		if (n >= 0 || errno != EINTR)
			return n > 0 ? 1 : n;
	}
}

static void put_be32(unsigned char *b, uint32_t v)
{
	b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = v;
}

static uint32_t get_be32(const unsigned char *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void hex(char *out, size_t n, const unsigned char *b, size_t len)
{
	size_t o = 0;
	out[0] = 0;
	for (size_t i = 0; i < len && o + 4 < n; i++)
		o += xsnprintf(out + o, n - o, "%s%02x", i ? " " : "", b[i]);
}

/* ---- what the program holds: mdevs, open handles, touched subchannels ---------------- */

struct region {
	uint32_t index, flags, cap_type, cap_subtype;
	uint64_t size, offset;
};

struct handle {
	int used;
	char name[65];
	char uuid[37];
	enum via via;
	int fd[NPARTS];    /* -1: closed or never opened */
	int users[NPARTS]; /* calls in flight on each fd */
	uint32_t ioas_id;
	int efd[3];        /* eventfd of the I/O, CRW and REQ irq, -1: none yet */
	struct region regions[MAX_REGIONS];
	int nregions;      /* -1: not queried yet */
	unsigned char *dma;
	int stop;          /* tells the consumer's watcher thread to end */
	unsigned long requests; /* device requests the consumer's watcher has answered */
	struct stall *stall; /* an io_stall's write held in the kernel, until io_release */
};

struct stall;
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static struct handle handles[MAX_HANDLES];
static struct { char name[65], uuid[37], parent[16]; int used; } mdevs[MAX_MDEVS];
static char touched[MAX_TOUCHED][16];
static char offlined[MAX_TOUCHED][16]; /* subchannels whose ccw device `online` set offline */

static void touch(const char *schid)
{
	pthread_mutex_lock(&state_lock);
	for (int i = 0; i < MAX_TOUCHED; i++) {
		if (!strcmp(touched[i], schid))
			break;
		if (!touched[i][0]) {
			xsnprintf(touched[i], sizeof(touched[i]), "%s", schid);
			break;
		}
	}
	pthread_mutex_unlock(&state_lock);
}

static const char *mdev_uuid(const char *name)
{
	const char *u = NULL;
	pthread_mutex_lock(&state_lock);
	for (int i = 0; i < MAX_MDEVS; i++)
		if (mdevs[i].used && !strcmp(mdevs[i].name, name))
			u = mdevs[i].uuid;
	pthread_mutex_unlock(&state_lock);
	return u;
}

/* The newest open handle of that name (slots are never reused: a thread may still use one). */
static struct handle *handle_find(const char *name)
{
	struct handle *h = NULL;
	pthread_mutex_lock(&state_lock);
	for (int i = 0; i < MAX_HANDLES; i++)
		if (handles[i].used && !strcmp(handles[i].name, name))
			h = &handles[i];
	pthread_mutex_unlock(&state_lock);
	return h;
}

/* Takes a reference on one of the handle's fds for a call; -1 if that part is closed. */
static int fd_get(struct handle *h, enum part p)
{
	int fd;
	pthread_mutex_lock(&state_lock);
	fd = h->fd[p];
	if (fd >= 0)
		h->users[p]++;
	pthread_mutex_unlock(&state_lock);
	return fd;
}

static void fd_put(struct handle *h, enum part p)
{
	pthread_mutex_lock(&state_lock);
	h->users[p]--;
	pthread_mutex_unlock(&state_lock);
}

/* Closes one part now. With a call still in flight on it (a blocked reset, the consumer's
 * reset) the number is kept and /dev/null put behind it with dup2, so the file is released
 * at this step as a close would, and the in-flight call never sees a reused number. */
static void close_part(struct handle *h, enum part p, struct res *r)
{
	int fd, users, all_closed;
	pthread_mutex_lock(&state_lock);
	fd = h->fd[p];
	users = h->users[p];
	h->fd[p] = -1;
	if (p == PART_DEVICE)
		h->stop = 1;
	all_closed = h->fd[0] < 0 && h->fd[1] < 0 && h->fd[2] < 0;
	/* a handle whose io_stall is held stays findable: only its io_release ends the stall */
	if (all_closed && !h->stall)
		h->used = 0;
	pthread_mutex_unlock(&state_lock);
	if (fd < 0) {
		note(r, "%s: was not open;", part_name[p]);
	} else if (users == 0) {
		close(fd);
		note(r, "%s: closed;", part_name[p]);
	} else {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0 && dup2(null, fd) >= 0)
			note(r, "%s: dup2 /dev/null over fd %d (%d call(s) in flight);", part_name[p], fd, users);
		else
			note(r, "%s: dup2 failed: %s;", part_name[p], errno_str(errno));
		if (null >= 0)
			close(null);
	}
}

static struct handle *need_handle(const struct step *s, struct res *r)
{
	struct handle *h = handle_find(s->handle);
	if (!h)
		op_fail(r, "unknown handle \"%s\"", s->handle);
	return h;
}

static int need_device(struct handle *h, struct res *r)
{
	int fd = fd_get(h, PART_DEVICE);
	if (fd < 0)
		op_fail(r, "handle \"%s\": device fd is closed", h->name);
	return fd;
}

/* ---- vfio device calls (images/agent/src/vfio/mod.rs) -------------------------------- */

/* VFIO_DEVICE_GET_REGION_INFO with room for the capability chain, walked for the CCW type. */
static int region_info(int dev, uint32_t index, struct region *out, struct res *r)
{
	union {
		struct vfio_region_info info;
		unsigned char raw[VFIO_REGION_INFO_WITH_CAPS_SIZE];
	} b;
	memset(&b, 0, sizeof(b));
	/* as QEMU asks: the bare struct first, then again with the room the kernel says the
	 * capability chain needs */
	b.info.argsz = sizeof(b.info);
	b.info.index = index;
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &b) < 0)
		return sys_fail(r, errno, "VFIO_DEVICE_GET_REGION_INFO");
	if (b.info.argsz > sizeof(b.info)) {
		memset(&b, 0, sizeof(b));
		b.info.argsz = sizeof(b);
		b.info.index = index;
		if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &b) < 0)
			return sys_fail(r, errno, "VFIO_DEVICE_GET_REGION_INFO");
	}
	memset(out, 0, sizeof(*out));
	out->index = index;
	out->flags = b.info.flags;
	out->size = b.info.size;
	out->offset = b.info.offset;
	if ((b.info.flags & VFIO_REGION_INFO_FLAG_CAPS) && b.info.cap_offset) {
		uint32_t off = b.info.cap_offset;
		/* each capability: { u16 id, u16 version, u32 next } and, for a type, { u32 type, subtype } */
		for (int i = 0; i < 8 && off >= sizeof(b.info) && off + 16 <= sizeof(b); i++) {
			uint16_t id;
			uint32_t next, t, st;
			memcpy(&id, b.raw + off, 2);
			memcpy(&next, b.raw + off + 4, 4);
			if (id == VFIO_REGION_INFO_CAP_TYPE) {
				memcpy(&t, b.raw + off + 8, 4);
				memcpy(&st, b.raw + off + 12, 4);
				out->cap_type = t;
				out->cap_subtype = st;
				break;
			}
			if (!next)
				break;
			off = next;
		}
	}
	return 0;
}

/* The regions of a handle, asking the kernel the first time. */
static int regions(struct handle *h, int dev, struct res *r)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct region tmp[MAX_REGIONS];
	uint32_t n;
	if (h->nregions >= 0)
		return 0;
	if (ioctl(dev, VFIO_DEVICE_GET_INFO, &info) < 0)
		return sys_fail(r, errno, "VFIO_DEVICE_GET_INFO");
	n = info.num_regions < MAX_REGIONS ? info.num_regions : MAX_REGIONS;
	for (uint32_t i = 0; i < n; i++)
		if (region_info(dev, i, &tmp[i], r))
			return -1;
	pthread_mutex_lock(&state_lock);
	memcpy(h->regions, tmp, sizeof(tmp));
	h->nregions = (int)n;
	pthread_mutex_unlock(&state_lock);
	return 0;
}

/* The I/O region is index 0; the others are found by their CCW capability subtype. */
static const struct region *find_region(struct handle *h, int dev, enum region_kind k, struct res *r)
{
	static const uint32_t sub[] = { 0, VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD,
					VFIO_REGION_SUBTYPE_CCW_SCHIB, VFIO_REGION_SUBTYPE_CCW_CRW };
	if (regions(h, dev, r))
		return NULL;
	for (int i = 0; i < h->nregions; i++) {
		const struct region *g = &h->regions[i];
		if (k == REGION_IO ? g->index == VFIO_CCW_CONFIG_REGION_INDEX
				   : g->cap_type == VFIO_REGION_TYPE_CCW && g->cap_subtype == sub[k])
			return g;
	}
	op_fail(r, "device has no %s region", region_name[k]);
	return NULL;
}

static const char *irq_name(uint32_t index)
{
	return index == VFIO_CCW_IO_IRQ_INDEX ? "IO" : index == VFIO_CCW_CRW_IRQ_INDEX ? "CRW" : "REQ";
}

/* One ACTION_TRIGGER for one vector of `index` (vfio/mod.rs set_irqs); `fd` is read only
 * with DATA_EVENTFD. */
static int set_irqs_action(int dev, uint32_t index, uint32_t flags, int fd, struct res *r)
{
	struct vfio_irq_set_eventfd s = {
		.argsz = sizeof(s),
		.flags = flags,
		.index = index,
		.start = 0,
		.count = 1,
		.fd = fd,
	};
	const char *what = "";
	if (flags & VFIO_IRQ_SET_ACTION_MASK)
		what = ", ACTION_MASK";
	else if (flags & VFIO_IRQ_SET_ACTION_UNMASK)
		what = ", ACTION_UNMASK";
	else if (flags & VFIO_IRQ_SET_DATA_NONE)
		what = ", DATA_NONE";
	else if (flags & VFIO_IRQ_SET_DATA_BOOL)
		what = ", DATA_BOOL";
	if (ioctl(dev, VFIO_DEVICE_SET_IRQS, &s) < 0)
		return sys_fail(r, errno, "VFIO_DEVICE_SET_IRQS[%s%s]", irq_name(index), what);
	return 0;
}

static int set_irqs(int dev, uint32_t index, uint32_t data, int fd, struct res *r)
{
	return set_irqs_action(dev, index, data | VFIO_IRQ_SET_ACTION_TRIGGER, fd, r);
}

/* DATA_BOOL true: the driver reads one byte at the data's start (the fd field's first byte in
 * memory, whatever the byte order). */
static int signal_irq_bool(int dev, uint32_t index, struct res *r)
{
	int32_t truth = 0;
	memset(&truth, 1, 1);
	return set_irqs(dev, index, VFIO_IRQ_SET_DATA_BOOL, truth, r);
}

/* Points irq `index` at an eventfd (fd -1 removes the trigger). */
static int set_irq_eventfd(int dev, uint32_t index, int fd, struct res *r)
{
	return set_irqs(dev, index, VFIO_IRQ_SET_DATA_EVENTFD, fd, r);
}

/* The eventfd on irq `index`, registered with VFIO_DEVICE_SET_IRQS on first use. */
static int ensure_irq(struct handle *h, int dev, uint32_t index, struct res *r)
{
	int efd;
	pthread_mutex_lock(&state_lock);
	efd = h->efd[index];
	pthread_mutex_unlock(&state_lock);
	if (efd >= 0)
		return efd;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return sys_fail(r, errno, "eventfd");
	if (set_irq_eventfd(dev, index, efd, r)) {
		close(efd);
		return -1;
	}
	pthread_mutex_lock(&state_lock);
	h->efd[index] = efd;
	pthread_mutex_unlock(&state_lock);
	return efd;
}

/* The DMA buffer (images/agent/src/vfio/dma.rs): anonymous memory mapped for the device at
 * a fixed IOVA, through the type1 container or the iommufd IOAS. */
static int dma_map(struct handle *h, int c, unsigned char *p, struct res *r)
{
	if (h->via == VIA_IOMMUFD) {
		struct iommu_ioas_map m = {
			.size = sizeof(m),
			.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
			.ioas_id = h->ioas_id,
			.user_va = (uintptr_t)p,
			.length = DMA_LEN,
			.iova = DMA_IOVA,
		};
		if (ioctl(c, IOMMU_IOAS_MAP, &m) < 0)
			return sys_fail(r, errno, "IOMMU_IOAS_MAP");
	} else {
		struct vfio_iommu_type1_dma_map m = {
			.argsz = sizeof(m),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uintptr_t)p,
			.iova = DMA_IOVA,
			.size = DMA_LEN,
		};
		if (ioctl(c, VFIO_IOMMU_MAP_DMA, &m) < 0)
			return sys_fail(r, errno, "VFIO_IOMMU_MAP_DMA");
	}
	return 0;
}

static int dma_unmap(struct handle *h, int c, struct res *r)
{
	if (h->via == VIA_IOMMUFD) {
		struct iommu_ioas_unmap u = {
			.size = sizeof(u),
			.ioas_id = h->ioas_id,
			.iova = DMA_IOVA,
			.length = DMA_LEN,
		};
		if (ioctl(c, IOMMU_IOAS_UNMAP, &u) < 0)
			return sys_fail(r, errno, "IOMMU_IOAS_UNMAP");
	} else {
		struct vfio_iommu_type1_dma_unmap u = {
			.argsz = sizeof(u),
			.iova = DMA_IOVA,
			.size = DMA_LEN,
		};
		if (ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u) < 0)
			return sys_fail(r, errno, "VFIO_IOMMU_UNMAP_DMA");
	}
	return 0;
}

static unsigned char *ensure_dma(struct handle *h, struct res *r)
{
	unsigned char *p;
	int c;
	pthread_mutex_lock(&state_lock);
	p = h->dma;
	pthread_mutex_unlock(&state_lock);
	if (p)
		return p;
	c = fd_get(h, PART_CONTAINER);
	if (c < 0) {
		op_fail(r, "handle \"%s\": container/iommufd is closed", h->name);
		return NULL;
	}
	p = mmap(NULL, DMA_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED) {
		sys_fail(r, errno, "mmap DMA buffer");
		p = NULL;
	} else if (dma_map(h, c, p, r) < 0) {
		p = NULL;
	}
	fd_put(h, PART_CONTAINER);
	if (p) {
		pthread_mutex_lock(&state_lock);
		if (h->dma)
			p = h->dma; /* a racing first user mapped it already */
		else
			h->dma = p;
		pthread_mutex_unlock(&state_lock);
	}
	return p;
}

/* ---- channel programs (images/agent/src/ops/io.rs) ----------------------------------- */

/* A format-1 CCW: command, flags, count, 31-bit data address. */
static void ccw1(unsigned char *b, uint8_t cmd, uint8_t flags, uint16_t count, uint32_t cda)
{
	b[0] = cmd; b[1] = flags; b[2] = count >> 8; b[3] = count;
	put_be32(b + 4, cda);
}

/* A format-0 CCW: command, 24-bit data address, flags, reserved, count. */
static void ccw0(unsigned char *b, uint8_t cmd, uint8_t flags, uint16_t count, uint32_t cda)
{
	b[0] = cmd; b[1] = cda >> 16; b[2] = cda >> 8; b[3] = cda;
	b[4] = flags; b[5] = 0; b[6] = count >> 8; b[7] = count;
}

/* The I/O region for a START: ORB (intparm, word 1, channel program address), SCSW word 0. */
static void io_region_start(unsigned char *reg, uint32_t orb_word1, uint32_t cpa)
{
	memset(reg, 0, IO_REGION_SIZE);
	put_be32(reg + IO_REGION_ORB, 0xCC000001u); /* intparm: the driver puts its own */
	put_be32(reg + IO_REGION_ORB + 4, orb_word1);
	put_be32(reg + IO_REGION_ORB + 8, cpa);
	put_be32(reg + IO_REGION_SCSW, SCSW0_FCTL_START);
}

/* Writes the SENSE ID program into the DMA buffer and returns ORB word 1 for it. */
static uint32_t prepare_sense_id(unsigned char *dma, int suspend)
{
	memset(dma + DMA_DATA_OFF, 0, 8);
	ccw1(dma + DMA_CCW_OFF, CCW_CMD_SENSE_ID, CCW_FLAG_SLI | (suspend ? CCW_FLAG_SUSPEND : 0), 8,
	     DMA_IOVA + DMA_DATA_OFF);
	return ORB1_FORMAT1 | ORB1_PREFETCH | (suspend ? ORB1_SUSPEND_CTL : 0);
}

/* Reads the IRB the driver stored in the I/O region and decodes its SCSW. */
static int read_irb(int dev, uint64_t off, struct res *r)
{
	unsigned char reg[IO_REGION_SIZE];
	const unsigned char *irb = reg + IO_REGION_IRB;
	uint32_t w0, w2;
	if (pread(dev, reg, sizeof(reg), off) < 0)
		return sys_fail(r, errno, "pread io region (IRB)");
	w0 = get_be32(irb);
	w2 = get_be32(irb + 8);
	note(r, "irb: scsw %08x %08x %08x cc=%u fctl=%u actl=%#x stctl=%#x dstat=%#04x cstat=%#04x ret_code=%d;",
	     w0, get_be32(irb + 4), w2, (w0 >> 24) & 3, (w0 >> 12) & 7, (w0 >> 5) & 0x7f, w0 & 0x1f,
	     w2 >> 24, (w2 >> 16) & 0xff, (int32_t)get_be32(reg + IO_REGION_RET_CODE));
	return 0;
}

static int wait_interrupt(int efd, unsigned long ms, struct res *r)
{
	int n = poll_in(efd, (long)ms);
	if (n < 0)
		return sys_fail(r, errno, "poll I/O eventfd");
	if (n == 0)
		return sys_fail(r, ETIMEDOUT, "wait for I/O interrupt (%lu ms)", ms);
	eventfd_take(efd);
	return 0;
}

/* ---- operations --------------------------------------------------------------------- */

#define CSS "/sys/bus/css/devices"

/* list_subchannels (ops/css.rs) */
static int op_list_subchannels(const struct step *s, struct res *r)
{
	DIR *d = opendir(CSS);
	struct dirent *e;
	(void)s;
	if (!d)
		return sys_fail(r, errno, "opendir " CSS);
	while ((e = readdir(d))) {
		char p[300], ty[32], drv[64];
		if (e->d_name[0] == '.')
			continue;
		xsnprintf(p, sizeof(p), CSS "/%s/type", e->d_name);
		read_attr(p, ty, sizeof(ty));
		xsnprintf(p, sizeof(p), CSS "/%s/driver", e->d_name);
		link_name(p, drv, sizeof(drv));
		note(r, "%s(type %s, driver %s);", e->d_name, ty, drv[0] ? drv : "none");
	}
	closedir(d);
	return 0;
}

/* bind (ops/css.rs): driver_override first, so nothing else grabs the subchannel between
 * the unbind and the bind; then unbind from the current driver; then bind. */
static int op_bind(const struct step *s, struct res *r)
{
	char p[300], cur[64], now[64];
	const char *ovr = strcmp(s->driver, "io_subchannel") ? s->driver : "\n";
	touch(s->schid);
	xsnprintf(p, sizeof(p), CSS "/%s/driver", s->schid);
	link_name(p, cur, sizeof(cur));
	xsnprintf(p, sizeof(p), CSS "/%s/driver_override", s->schid);
	if (write_attr(r, p, ovr))
		return -1;
	if (!strcmp(cur, s->driver)) {
		note(r, "already bound to %s;", cur);
		return 0;
	}
	if (cur[0]) {
		xsnprintf(p, sizeof(p), "/sys/bus/css/drivers/%s/unbind", cur);
		if (write_attr(r, p, s->schid))
			return -1;
		note(r, "unbound from %s;", cur);
	}
	xsnprintf(p, sizeof(p), CSS "/%s/driver", s->schid);
	if (strcmp(link_name(p, now, sizeof(now)), s->driver)) { /* a reprobe may have bound it */
		xsnprintf(p, sizeof(p), "/sys/bus/css/drivers/%s/bind", s->driver);
		if (write_attr(r, p, s->schid))
			return -1;
		note(r, "bound to %s;", s->driver);
	}
	return 0;
}

static int op_unbind(const struct step *s, struct res *r)
{
	char p[300], cur[64];
	touch(s->schid);
	xsnprintf(p, sizeof(p), CSS "/%s/driver", s->schid);
	if (!link_name(p, cur, sizeof(cur))[0]) {
		note(r, "not bound;");
		return 0;
	}
	xsnprintf(p, sizeof(p), "/sys/bus/css/drivers/%s/unbind", cur);
	if (write_attr(r, p, s->schid))
		return -1;
	note(r, "unbound from %s;", cur);
	return 0;
}

static int op_rescan(const struct step *s, struct res *r)
{
	(void)s;
	return write_attr(r, "/sys/devices/css0/rescan", "1");
}

/* mdev_create (ops/mdev.rs): a random v4 UUID unless the scenario gives one. The name is
 * remembered before the write, so a write that blocks still leaves it known to cleanup. */
static int op_mdev_create(const struct step *s, struct res *r)
{
	char uuid[37], p[300];
	int slot = -1;
	if (s->uuid) {
		xsnprintf(uuid, sizeof(uuid), "%s", s->uuid);
	} else {
		unsigned char b[16];
		if (getrandom(b, sizeof(b), 0) != sizeof(b))
			return sys_fail(r, errno, "getrandom");
		b[6] = (b[6] & 0x0f) | 0x40;
		b[8] = (b[8] & 0x3f) | 0x80;
		xsnprintf(uuid, sizeof(uuid),
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
			 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
			 b[13], b[14], b[15]);
	}
	pthread_mutex_lock(&state_lock);
	for (int i = 0; i < MAX_MDEVS && slot < 0; i++)
		if (!mdevs[i].used)
			slot = i;
	if (slot >= 0) {
		mdevs[slot].used = 1;
		xsnprintf(mdevs[slot].name, sizeof(mdevs[slot].name), "%s", s->mdev);
		xsnprintf(mdevs[slot].uuid, sizeof(mdevs[slot].uuid), "%s", uuid);
		xsnprintf(mdevs[slot].parent, sizeof(mdevs[slot].parent), "%s", s->schid);
	}
	pthread_mutex_unlock(&state_lock);
	if (slot < 0)
		return op_fail(r, "too many mdevs");
	touch(s->schid);
	note(r, "uuid %s;", uuid);
	xsnprintf(p, sizeof(p), CSS "/%s/mdev_supported_types/vfio_ccw-io/create", s->schid);
	return write_attr(r, p, uuid);
}

static int op_mdev_remove(const struct step *s, struct res *r)
{
	char p[300];
	const char *u = mdev_uuid(s->mdev);
	if (!u)
		return op_fail(r, "unknown mdev \"%s\"", s->mdev);
	xsnprintf(p, sizeof(p), "/sys/bus/mdev/devices/%s/remove", u);
	return write_attr(r, p, "1");
}

static int op_available_instances(const struct step *s, struct res *r)
{
	char p[300], v[32];
	int fd;
	ssize_t n;
	xsnprintf(p, sizeof(p), CSS "/%s/mdev_supported_types/vfio_ccw-io/available_instances", s->schid);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sys_fail(r, errno, "read %s", p);
	n = read(fd, v, sizeof(v) - 1);
	close(fd);
	if (n < 0)
		return sys_fail(r, errno, "read %s", p);
	v[n] = 0;
	v[strcspn(v, "\n")] = 0;
	note(r, "available_instances=%s;", v);
	return 0;
}

/* open, group/container path: what QEMU's vfio_get_group + vfio_get_device do. */
static int open_group(const char *uuid, int fd[NPARTS], struct res *r)
{
	char p[300], g[32];
	struct vfio_group_status st = { .argsz = sizeof(st) };
	int ver, c, grp, dev;
	xsnprintf(p, sizeof(p), "/sys/bus/mdev/devices/%s/iommu_group", uuid);
	if (!link_name(p, g, sizeof(g))[0])
		return sys_fail(r, ENOENT, "readlink %s", p);
	c = fd[PART_CONTAINER] = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (c < 0)
		return sys_fail(r, errno, "open /dev/vfio/vfio");
	ver = ioctl(c, VFIO_GET_API_VERSION);
	if (ver < 0)
		return sys_fail(r, errno, "VFIO_GET_API_VERSION");
	if (ver != VFIO_API_VERSION)
		return sys_fail(r, EPROTO, "VFIO_GET_API_VERSION returned %d", ver);
	if (ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1)
		return sys_fail(r, ENOTSUP, "VFIO_CHECK_EXTENSION(TYPE1v2)");
	xsnprintf(p, sizeof(p), "/dev/vfio/%s", g);
	grp = fd[PART_GROUP] = open(p, O_RDWR | O_CLOEXEC);
	if (grp < 0)
		return sys_fail(r, errno, "open %s", p);
	note(r, "group %s;", p);
	if (ioctl(grp, VFIO_GROUP_GET_STATUS, &st) < 0)
		return sys_fail(r, errno, "VFIO_GROUP_GET_STATUS");
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE))
		return sys_fail(r, EBUSY, "VFIO_GROUP_GET_STATUS: group not viable");
	if (ioctl(grp, VFIO_GROUP_SET_CONTAINER, &c) < 0)
		return sys_fail(r, errno, "VFIO_GROUP_SET_CONTAINER");
	if (ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
		return sys_fail(r, errno, "VFIO_SET_IOMMU");
	dev = fd[PART_DEVICE] = ioctl(grp, VFIO_GROUP_GET_DEVICE_FD, uuid);
	if (dev < 0)
		return sys_fail(r, errno, "VFIO_GROUP_GET_DEVICE_FD");
	return 0;
}

/* open, iommufd cdev path: bind, allocate an IOAS, attach. */
static int open_iommufd(const char *uuid, int fd[NPARTS], uint32_t *ioas, struct res *r)
{
	char p[300], node[64] = "";
	DIR *d;
	struct dirent *e;
	int dev, iommu;
	xsnprintf(p, sizeof(p), "/sys/bus/mdev/devices/%s/vfio-dev", uuid);
	d = opendir(p);
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "vfio", 4))
			xsnprintf(node, sizeof(node), "%s", e->d_name);
	if (d)
		closedir(d);
	if (!node[0])
		return sys_fail(r, ENOENT, "readdir %s", p);
	xsnprintf(p, sizeof(p), "/dev/vfio/devices/%s", node);
	dev = fd[PART_DEVICE] = open(p, O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return sys_fail(r, errno, "open %s", p);
	iommu = fd[PART_CONTAINER] = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommu < 0)
		return sys_fail(r, errno, "open /dev/iommu");
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommu };
	if (ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind) < 0)
		return sys_fail(r, errno, "VFIO_DEVICE_BIND_IOMMUFD");
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(iommu, IOMMU_IOAS_ALLOC, &alloc) < 0)
		return sys_fail(r, errno, "IOMMU_IOAS_ALLOC");
	struct vfio_device_attach_iommufd_pt att = { .argsz = sizeof(att), .pt_id = alloc.out_ioas_id };
	if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &att) < 0)
		return sys_fail(r, errno, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	*ioas = alloc.out_ioas_id;
	note(r, "device %s, devid %u, ioas %u;", p, bind.out_devid, alloc.out_ioas_id);
	return 0;
}

/* open (ops/open.rs): on failure, what was opened stays open, as in the agent, whose
 * handle is not registered then: the fds live until the program exits. */
static int op_open(const struct step *s, struct res *r)
{
	const char *uuid = mdev_uuid(s->mdev);
	int fd[NPARTS] = { -1, -1, -1 }, slot = -1;
	uint32_t ioas = 0;
	if (!uuid)
		return op_fail(r, "unknown mdev \"%s\"", s->mdev);
	if (handle_find(s->handle))
		return op_fail(r, "handle \"%s\" is already open", s->handle);
	if (s->via == VIA_IOMMUFD ? open_iommufd(uuid, fd, &ioas, r) : open_group(uuid, fd, r))
		return -1;
	pthread_mutex_lock(&state_lock);
	for (int i = 0; i < MAX_HANDLES && slot < 0; i++)
		if (!handles[i].used && !handles[i].name[0])
			slot = i;
	if (slot >= 0) {
		struct handle *h = &handles[slot];
		h->used = 1;
		xsnprintf(h->name, sizeof(h->name), "%s", s->handle);
		xsnprintf(h->uuid, sizeof(h->uuid), "%s", uuid);
		h->via = s->via;
		memcpy(h->fd, fd, sizeof(fd));
		h->ioas_id = ioas;
		h->efd[0] = h->efd[1] = h->efd[2] = -1;
		h->nregions = -1;
	}
	pthread_mutex_unlock(&state_lock);
	if (slot < 0)
		return op_fail(r, "too many handles");
	note(r, "device fd %d;", fd[PART_DEVICE]);
	return 0;
}

static int op_close(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	if (!h)
		return -1;
	for (int i = 0; i < s->norder; i++)
		close_part(h, s->order[i], r);
	return 0;
}

/* get_info (ops/device.rs): device info, every region and every irq. */
static int op_get_info_fd(struct handle *h, int dev, struct res *r)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	if (ioctl(dev, VFIO_DEVICE_GET_INFO, &info) < 0)
		return sys_fail(r, errno, "VFIO_DEVICE_GET_INFO");
	note(r, "flags=%#x regions=%u irqs=%u;", info.flags, info.num_regions, info.num_irqs);
	h->nregions = -1;
	if (regions(h, dev, r))
		return -1;
	for (int i = 0; i < h->nregions; i++)
		note(r, "region %u: size %llu offset %#llx type %u/%u;", h->regions[i].index,
		     (unsigned long long)h->regions[i].size, (unsigned long long)h->regions[i].offset,
		     h->regions[i].cap_type, h->regions[i].cap_subtype);
	for (uint32_t i = 0; i < info.num_irqs; i++) {
		struct vfio_irq_info q = { .argsz = sizeof(q), .index = i };
		if (ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &q) < 0)
			return sys_fail(r, errno, "VFIO_DEVICE_GET_IRQ_INFO");
		note(r, "irq %u: count %u flags %#x;", i, q.count, q.flags);
	}
	return 0;
}

static int op_get_info(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	int dev, ret;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	ret = op_get_info_fd(h, dev, r);
	fd_put(h, PART_DEVICE);
	return ret;
}

static int op_reset(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	int dev, ret = 0;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	if (ioctl(dev, VFIO_DEVICE_RESET) < 0)
		ret = sys_fail(r, errno, "VFIO_DEVICE_RESET");
	fd_put(h, PART_DEVICE);
	return ret;
}

/* ops/irq.rs: VFIO_DEVICE_SET_IRQS, s->count times: a fresh eventfd replaces the handle's
 * (whose fd is closed, so the driver's reference was the last), none (fd -1), or DATA_NONE.
 * Unlike the agent, an I/O step still polling the old number sees it closed. */
static int op_set_irq(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	unsigned i;
	int dev, ret = 0;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	for (i = 0; i < s->count && ret == 0; i++) {
		int old, efd = -1;
		if (s->irq_action == IRQ_SIGNAL) {
			ret = set_irqs(dev, s->irq, VFIO_IRQ_SET_DATA_NONE, -1, r);
			continue;
		}
		if (s->irq_action == IRQ_SIGNAL_BOOL) {
			ret = signal_irq_bool(dev, s->irq, r);
			continue;
		}
		if (s->irq_action == IRQ_MASK || s->irq_action == IRQ_UNMASK) {
			uint32_t a = s->irq_action == IRQ_MASK ? VFIO_IRQ_SET_ACTION_MASK
							       : VFIO_IRQ_SET_ACTION_UNMASK;
			ret = set_irqs_action(dev, s->irq, VFIO_IRQ_SET_DATA_NONE | a, -1, r);
			continue;
		}
		if (s->irq_action == IRQ_REGISTER) {
			efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			if (efd < 0) {
				ret = sys_fail(r, errno, "eventfd");
				continue;
			}
		}
		if ((ret = set_irq_eventfd(dev, s->irq, efd, r))) {
			if (efd >= 0)
				close(efd);
			continue;
		}
		pthread_mutex_lock(&state_lock);
		old = h->efd[s->irq];
		h->efd[s->irq] = efd;
		pthread_mutex_unlock(&state_lock);
		if (old >= 0)
			close(old);
	}
	fd_put(h, PART_DEVICE);
	return ret;
}

/* ops/dma.rs: unmap the DMA buffer (the driver's dma_unmap callback runs), optionally map it
 * again, s->count rounds; the first refused call ends the step. */
static int op_dma_unmap(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	unsigned char *p;
	unsigned i;
	int c, ret = 0;
	if (!h || !(p = ensure_dma(h, r)))
		return -1;
	c = fd_get(h, PART_CONTAINER);
	if (c < 0)
		return op_fail(r, "handle \"%s\": container/iommufd is closed", h->name);
	for (i = 0; i < s->count && ret == 0; i++) {
		ret = dma_unmap(h, c, r);
		if (ret == 0 && s->remap)
			ret = dma_map(h, c, p, r);
	}
	fd_put(h, PART_CONTAINER);
	return ret;
}

/* The consumer's watcher (ops/consumer.rs): waits on the device-request and CRW eventfds and
 * answers each device request by the policy, as QEMU's vfio-ccw device does. */
struct watcher {
	struct handle *h;
	enum on_request policy;
	int req, crw;
};

static void *watcher_main(void *arg)
{
	struct watcher *w = arg;
	struct handle *h = w->h;
	unsigned long nreq = 0;
	char tname[16];
	xsnprintf(tname, sizeof(tname), "watch-%s", h->name);
	pthread_setname_np(pthread_self(), tname);
	for (;;) {
		struct pollfd p[2] = { { .fd = w->req, .events = POLLIN }, { .fd = w->crw, .events = POLLIN } };
		int stop;
		pthread_mutex_lock(&state_lock);
		stop = h->stop;
		pthread_mutex_unlock(&state_lock);
		if (stop)
			break;
		if (poll(p, 2, WATCH_TICK_MS) <= 0)
			continue;
		if (p[1].revents)
			say("consumer %s: CRW signalled (%lu)", h->name, eventfd_take(w->crw));
		if (p[0].revents) {
			struct res r = { 0 };
			int dev;
			eventfd_take(w->req);
			nreq++;
			switch (w->policy) {
			case ON_REQUEST_IGNORE:
				say("consumer %s: device request #%lu: ignored", h->name, nreq);
				break;
			case ON_REQUEST_RESET:
				dev = fd_get(h, PART_DEVICE);
				if (dev < 0) {
					say("consumer %s: device request #%lu: device fd already closed", h->name, nreq);
					break;
				}
				say("consumer %s: device request #%lu: VFIO_DEVICE_RESET ...", h->name, nreq);
				if (ioctl(dev, VFIO_DEVICE_RESET) < 0)
					sys_fail(&r, errno, "VFIO_DEVICE_RESET");
				fd_put(h, PART_DEVICE);
				say("consumer %s: device request #%lu: VFIO_DEVICE_RESET -> %s", h->name, nreq,
				    res_short(&r));
				break;
			case ON_REQUEST_CLOSE:
				/* as QEMU's unrealize: irq triggers down, then device, group, container */
				dev = fd_get(h, PART_DEVICE);
				if (dev >= 0) {
					uint32_t idx[] = { VFIO_CCW_REQ_IRQ_INDEX, VFIO_CCW_CRW_IRQ_INDEX, VFIO_CCW_IO_IRQ_INDEX };
					for (int i = 0; i < 3; i++) {
						struct res u = { 0 };
						set_irq_eventfd(dev, idx[i], -1, &u);
						note(&r, "unset %s: %s;", irq_name(idx[i]), res_short(&u));
					}
					fd_put(h, PART_DEVICE);
				}
				for (int i = 0; i < NPARTS; i++)
					close_part(h, (enum part)i, &r);
				say("consumer %s: device request #%lu: closed: %s", h->name, nreq, r.info);
				break;
			}
			pthread_mutex_lock(&state_lock);
			h->requests = nreq;
			pthread_mutex_unlock(&state_lock);
		}
	}
	free(w);
	return NULL;
}

/* await_request (ops/consumer.rs): until the handle's consumer has answered `count` device
 * requests, at most `ms`. */
static int op_await_request(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	unsigned long want = s->count ? s->count : 1, n = 0;
	long t0 = now_ms();
	if (!h)
		return -1;
	for (;;) {
		pthread_mutex_lock(&state_lock);
		n = h->requests;
		pthread_mutex_unlock(&state_lock);
		if (n >= want) {
			note(r, "requests %lu after %ld ms;", n, now_ms() - t0);
			return 0;
		}
		if (now_ms() - t0 >= (long)s->ms) {
			note(r, "requests %lu;", n);
			return sys_fail(r, ETIMEDOUT, "wait for device request");
		}
		sleep_ms(10);
	}
}

/* consumer (ops/consumer.rs): what QEMU's hw/vfio/ccw.c does at realize. */
static int op_consumer(const struct step *s, struct res *r)
{
	static const uint32_t idx[] = { VFIO_CCW_IO_IRQ_INDEX, VFIO_CCW_CRW_IRQ_INDEX, VFIO_CCW_REQ_IRQ_INDEX };
	struct handle *h = need_handle(s, r);
	struct watcher *w;
	pthread_t t;
	int dev, ret = -1;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	if (op_get_info_fd(h, dev, r))
		goto out;
	for (int i = 0; i < 3; i++)
		if (ensure_irq(h, dev, idx[i], r) < 0)
			goto out;
	if (!ensure_dma(h, r))
		goto out;
	w = calloc(1, sizeof(*w));
	if (!w) {
		op_fail(r, "out of memory");
		goto out;
	}
	w->h = h;
	w->policy = s->on_request;
	w->req = h->efd[VFIO_CCW_REQ_IRQ_INDEX];
	w->crw = h->efd[VFIO_CCW_CRW_IRQ_INDEX];
	if (pthread_create(&t, NULL, watcher_main, w)) {
		free(w);
		op_fail(r, "cannot start the watcher thread");
		goto out;
	}
	pthread_detach(t);
	note(r, "eventfds on IO, CRW, REQ; DMA at %#x; watcher started;", DMA_IOVA);
	ret = 0;
out:
	fd_put(h, PART_DEVICE);
	return ret;
}

/* io (ops/io.rs): `count` SENSE IDs, each waiting for its interrupt; with suspend, one
 * program started with the suspend flag and left pending. */
static int op_io(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	const struct region *io;
	unsigned char *dma, reg[IO_REGION_SIZE];
	unsigned loops = s->suspend ? 1 : (s->count ? s->count : 1);
	int dev, efd, ret = -1;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	if (!(io = find_region(h, dev, REGION_IO, r)) || !(dma = ensure_dma(h, r)) ||
	    (efd = ensure_irq(h, dev, VFIO_CCW_IO_IRQ_INDEX, r)) < 0)
		goto out;
	note(r, "stale signals %lu;", eventfd_take(efd)); /* an old signal must not count */
	if (s->prog) /* copied in by the driver, never written by the device: once serves all */
		memcpy(dma + PROG_CCW_OFF, s->prog, s->prog_len);
	for (unsigned i = 0; i < loops; i++) {
		uint32_t w1;
		if (s->prog) {
			w1 = s->prog_w1;
			io_region_start(reg, w1, s->prog_cpa);
			put_be32(reg + IO_REGION_SCSW, s->prog_scsw);
		} else {
			w1 = prepare_sense_id(dma, s->suspend);
			io_region_start(reg, w1, DMA_IOVA + DMA_CCW_OFF);
		}
		if (pwrite(dev, reg, sizeof(reg), io->offset) < 0) {
			note(r, "done %u;", i);
			sys_fail(r, errno, "pwrite io region (START)");
			goto out;
		}
		if (s->suspend) {
			note(r, "suspended, orb word 1 %#010x;", w1);
			ret = 0;
			goto out;
		}
		if (wait_interrupt(efd, s->ms, r)) {
			note(r, "done %u;", i);
			goto out;
		}
		if (i + 1 == loops && s->prog) {
			if (read_irb(dev, io->offset, r))
				goto out;
			note(r, "count %u;", loops);
		} else if (i + 1 == loops) {
			char sense[32];
			if (read_irb(dev, io->offset, r))
				goto out;
			hex(sense, sizeof(sense), dma + DMA_DATA_OFF, 8);
			note(r, "count %u, sense id data %s;", loops, sense);
		}
	}
	ret = 0;
out:
	fd_put(h, PART_DEVICE);
	return ret;
}

/* io_stall / io_release (ops/stall.rs, uffd.rs): one SENSE ID whose CCW sits in a DMA page
 * that is missing behind a userfaultfd, so the kernel's fetch of the channel program
 * (cp_init's vfio_dma_rw) sleeps in the fault inside fsm_io_request, with the FSM in
 * CP_PROCESSING and io_mutex held, until io_release supplies the page. */
struct stall {
	struct handle *h;
	int uffd, dev;
	unsigned char *region; /* the I/O region contents the writer writes */
	uint64_t offset;
	pthread_t writer;
	int done;              /* the write returned */
	ssize_t ret;
	int err;
};

static void *stall_writer(void *arg)
{
	struct stall *st = arg;
	ssize_t n = pwrite(st->dev, st->region, IO_REGION_SIZE, st->offset);
	int e = errno;
	pthread_setname_np(pthread_self(), "stall-writer");
	pthread_mutex_lock(&state_lock);
	st->ret = n;
	st->err = n < 0 ? e : 0;
	st->done = 1;
	pthread_mutex_unlock(&state_lock);
	fd_put(st->h, PART_DEVICE);
	return NULL;
}

static int stall_done(struct stall *st)
{
	int d;
	pthread_mutex_lock(&state_lock);
	d = st->done;
	pthread_mutex_unlock(&state_lock);
	return d;
}

static void stall_free(struct stall *st)
{
	pthread_join(st->writer, NULL);
	if (st->uffd >= 0)
		close(st->uffd);
	free(st->region);
	free(st);
}

static int op_io_stall(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	const struct region *io;
	unsigned char *dma;
	struct stall *st;
	int dev, efd, uffd;
	long end;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	if (h->stall) {
		fd_put(h, PART_DEVICE);
		return op_fail(r, "handle \"%s\" already has a stalled I/O: io_release it first", h->name);
	}
	if (!(io = find_region(h, dev, REGION_IO, r)) || !(dma = ensure_dma(h, r)) ||
	    (efd = ensure_irq(h, dev, VFIO_CCW_IO_IRQ_INDEX, r)) < 0) {
		fd_put(h, PART_DEVICE);
		return -1;
	}
	note(r, "stale signals %lu;", eventfd_take(efd));
	if (madvise(dma + DMA_STALL_OFF, STALL_PAGE, MADV_DONTNEED)) {
		fd_put(h, PART_DEVICE);
		return sys_fail(r, errno, "madvise(MADV_DONTNEED) stall page");
	}
	/* not UFFD_USER_MODE_ONLY: the fault to catch is the kernel's own copy_from_user */
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) {
		fd_put(h, PART_DEVICE);
		return sys_fail(r, errno, "userfaultfd");
	}
	{
		struct uffdio_api api = { .api = UFFD_API };
		struct uffdio_register_flat reg = {
			.start = (uintptr_t)(dma + DMA_STALL_OFF),
			.len = STALL_PAGE,
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(uffd, UFFDIO_API, &api) < 0 || ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
			int e = errno;
			close(uffd);
			fd_put(h, PART_DEVICE);
			return sys_fail(r, e, "UFFDIO_API/UFFDIO_REGISTER");
		}
	}
	st = calloc(1, sizeof(*st));
	if (!st || !(st->region = malloc(IO_REGION_SIZE))) {
		free(st);
		close(uffd);
		fd_put(h, PART_DEVICE);
		return op_fail(r, "out of memory");
	}
	st->h = h;
	st->uffd = uffd;
	st->dev = dev;
	st->offset = io->offset;
	io_region_start(st->region, ORB1_FORMAT1 | ORB1_PREFETCH, DMA_IOVA + DMA_STALL_OFF);
	/* the writer owns the device reference from here */
	if (pthread_create(&st->writer, NULL, stall_writer, st)) {
		free(st->region);
		free(st);
		close(uffd);
		fd_put(h, PART_DEVICE);
		return op_fail(r, "cannot start the stalled writer");
	}
	end = now_ms() + (long)s->ms;
	for (;;) {
		long left = end - now_ms();
		int n = poll_in(uffd, left < 20 ? (left > 0 ? left : 0) : 20);
		if (n > 0) {
			unsigned char msg[UFFD_MSG_SIZE];
			uint64_t addr;
			if (read(uffd, msg, sizeof(msg)) != (ssize_t)sizeof(msg) || msg[0] != UFFD_EVENT_PAGEFAULT)
				continue;
			memcpy(&addr, msg + UFFD_MSG_ADDRESS, 8);
			pthread_mutex_lock(&state_lock);
			h->stall = st;
			pthread_mutex_unlock(&state_lock);
			note(r, "stalled: fault at %#llx;", (unsigned long long)addr);
			return 0;
		}
		if (stall_done(st)) {
			/* the kernel answered without fetching the program: that answer is the outcome */
			ssize_t ret = st->ret;
			int err = st->err;
			stall_free(st);
			if (ret >= 0)
				return op_fail(r, "the write returned without faulting on the stall page");
			if (err == EFAULT)
				return op_fail(r, "this kernel fails the CCW fetch with EFAULT instead of waiting on the userfaultfd: io_stall cannot hold this path here");
			return sys_fail(r, err, "pwrite io region (START, CCW in the stall page)");
		}
		if (left <= 0) {
			pthread_mutex_lock(&state_lock);
			h->stall = st; /* io_release or cleanup ends it */
			pthread_mutex_unlock(&state_lock);
			return op_fail(r, "no fault on the stall page within %lu ms and the write has not returned", s->ms);
		}
	}
}

/* Supplies the page (the SENSE ID program) and lets the held write go on. */
static int op_io_release(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	struct stall *st;
	static unsigned char page[STALL_PAGE] __attribute__((aligned(4096)));
	const struct region *io;
	ssize_t ret;
	int err, dev, efd, rc = -1;
	char sense[32];
	if (!h)
		return -1;
	pthread_mutex_lock(&state_lock);
	st = h->stall;
	h->stall = NULL;
	pthread_mutex_unlock(&state_lock);
	if (!st)
		return op_fail(r, "handle \"%s\" has no stalled I/O: io_stall first", h->name);
	memset(page, 0, sizeof(page));
	ccw1(page, CCW_CMD_SENSE_ID, CCW_FLAG_SLI, 8, DMA_IOVA + DMA_STALL_OFF + DMA_DATA_OFF);
	{
		struct uffdio_copy c = {
			.dst = (uintptr_t)(h->dma + DMA_STALL_OFF),
			.src = (uintptr_t)page,
			.len = STALL_PAGE,
		};
		/* a failed copy (the fault went away with its task) still lets the writer finish */
		note(r, "resolved: %s;", ioctl(st->uffd, UFFDIO_COPY, &c) < 0 ? errno_str(errno) : "yes");
	}
	pthread_join(st->writer, NULL);
	ret = st->ret;
	err = st->err;
	close(st->uffd);
	free(st->region);
	free(st);
	if (ret < 0)
		return sys_fail(r, err, "pwrite io region (START, CCW in the stall page)");
	/* closed while the request was held: close_device ended the program, no interrupt comes */
	if ((dev = fd_get(h, PART_DEVICE)) < 0) {
		note(r, "device closed while the request was held;");
		return 0;
	}
	if ((efd = ensure_irq(h, dev, VFIO_CCW_IO_IRQ_INDEX, r)) < 0 || wait_interrupt(efd, s->ms, r) ||
	    !(io = find_region(h, dev, REGION_IO, r)) || read_irb(dev, io->offset, r))
		goto out;
	hex(sense, sizeof(sense), h->dma + DMA_STALL_OFF + DMA_DATA_OFF, 8);
	note(r, "sense id data %s;", sense);
	rc = 0;
out:
	fd_put(h, PART_DEVICE);
	return rc;
}

/* A stall nobody released: closing the userfaultfd fails the kernel's copy, the write ends. */
static void abandon_stall(struct handle *h, struct res *r)
{
	struct stall *st;
	pthread_mutex_lock(&state_lock);
	st = h->stall;
	h->stall = NULL;
	pthread_mutex_unlock(&state_lock);
	if (!st)
		return;
	close(st->uffd);
	st->uffd = -1;
	pthread_join(st->writer, NULL);
	note(r, "stall of %s abandoned: write %s;", h->name, st->ret >= 0 ? "ok" : errno_str(st->err));
	free(st->region);
	free(st);
}

/* halt / clear (ops/io.rs): HSCH or CSCH through the async region, then a short wait for
 * the interrupt the function should produce. */
static int op_async(const struct step *s, struct res *r, int clear)
{
	struct handle *h = need_handle(s, r);
	const struct region *a, *io;
	unsigned char cmd[CMD_REGION_SIZE] = { 0 };
	int dev, efd, n, ret = -1;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	if (!(a = find_region(h, dev, REGION_ASYNC, r)) ||
	    (efd = ensure_irq(h, dev, VFIO_CCW_IO_IRQ_INDEX, r)) < 0)
		goto out;
	eventfd_take(efd);
	put_be32(cmd, clear ? VFIO_CCW_ASYNC_CMD_CSCH : VFIO_CCW_ASYNC_CMD_HSCH);
	if (pwrite(dev, cmd, sizeof(cmd), a->offset) < 0) {
		sys_fail(r, errno, "pwrite async region (%s)", clear ? "CSCH" : "HSCH");
		goto out;
	}
	n = poll_in(efd, 1000);
	note(r, "interrupt: %s;", n > 0 ? "yes" : "no");
	if (n > 0) {
		eventfd_take(efd);
		if (!(io = find_region(h, dev, REGION_IO, r)) || read_irb(dev, io->offset, r))
			goto out;
	}
	ret = 0;
out:
	fd_put(h, PART_DEVICE);
	return ret;
}

static int op_read_region(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	const struct region *g;
	unsigned char buf[4096];
	char text[700];
	ssize_t n;
	int dev, ret = -1;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	if (!(g = find_region(h, dev, s->region, r)))
		goto out;
	n = pread(dev, buf, g->size < sizeof(buf) ? g->size : sizeof(buf), g->offset);
	if (n < 0) {
		sys_fail(r, errno, "pread %s region", region_name[s->region]);
		goto out;
	}
	hex(text, sizeof(text), buf, (size_t)n);
	note(r, "%s region (%zd bytes): %s;", region_name[s->region], n, text);
	ret = 0;
out:
	fd_put(h, PART_DEVICE);
	return ret;
}

/* region_access (ops/region.rs): `threads` threads make `count` accesses each; the
 * outcome is the errno most accesses got, or ok. A write writes back what a read of the
 * same range returned (zeros where it failed). */
struct access_job {
	int dev;
	const struct step *s;
	uint64_t pos, size;
	const unsigned char *data;
	pthread_t t;
	unsigned ok, shrt;
	unsigned errs[256]; /* failures by errno */
};

static void *access_thread(void *arg)
{
	struct access_job *j = arg;
	for (unsigned i = 0; i < (j->s->count ? j->s->count : 1); i++) {
		ssize_t n;
		unsigned char *buf = malloc(j->size ? j->size : 1);
		if (!buf)
			return NULL;
		switch (j->s->access) {
		case ACCESS_READ: n = pread(j->dev, buf, j->size, j->pos); break;
		case ACCESS_WRITE: n = pwrite(j->dev, j->data, j->size, j->pos); break;
		default: {
			void *m = mmap(NULL, j->size ? j->size : 1, PROT_READ | PROT_WRITE, MAP_SHARED,
				       j->dev, (off_t)j->pos);
			n = m == MAP_FAILED ? -1 : (ssize_t)j->size;
			if (m != MAP_FAILED)
				munmap(m, j->size ? j->size : 1);
		}
		}
		if (n < 0) {
			if (errno > 0 && errno < 256)
				j->errs[errno]++;
		} else if ((uint64_t)n == j->size) {
			j->ok++;
		} else {
			j->shrt++;
		}
		free(buf);
	}
	return NULL;
}

static int op_region_access(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	const struct region *g;
	struct access_job jobs[16];
	unsigned nt = s->threads ? (s->threads < 16 ? s->threads : 16) : 1, ok = 0, shrt = 0;
	unsigned counts[256] = { 0 };
	int dev, ret = -1, best = 0;
	unsigned char *data = NULL;
	uint64_t size;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	if (!(g = find_region(h, dev, s->region, r)))
		goto out;
	size = s->size ? s->size : (g->size > s->offset ? g->size - s->offset : 0);
	if (size > 65536) {
		op_fail(r, "size %llu is larger than 65536", (unsigned long long)size);
		goto out;
	}
	data = calloc(1, size ? size : 1);
	if (!data) {
		op_fail(r, "out of memory");
		goto out;
	}
	if (s->access == ACCESS_WRITE && pread(dev, data, size, g->offset + s->offset) < 0)
		memset(data, 0, size);
	for (unsigned i = 0; i < nt; i++) {
		jobs[i] = (struct access_job){ .dev = dev, .s = s, .pos = g->offset + s->offset,
					       .size = size, .data = data };
		pthread_create(&jobs[i].t, NULL, access_thread, &jobs[i]);
	}
	for (unsigned i = 0; i < nt; i++) {
		pthread_join(jobs[i].t, NULL);
		ok += jobs[i].ok;
		shrt += jobs[i].shrt;
		for (int e = 1; e < 256; e++)
			counts[e] += jobs[i].errs[e];
	}
	for (int e = 1; e < 256; e++)
		if (counts[e] > counts[best])
			best = e;
	note(r, "%s %s region at +%llu size %llu: ok %u short %u;", access_name[s->access],
	     region_name[s->region], (unsigned long long)s->offset, (unsigned long long)size, ok, shrt);
	for (int e = 1; e < 256; e++)
		if (counts[e])
			note(r, "%s %u;", errno_str(e), counts[e]);
	if (best) {
		sys_fail(r, best, "%s %s region at +%llu size %llu", access_name[s->access],
			 region_name[s->region], (unsigned long long)s->offset, (unsigned long long)size);
		goto out;
	}
	ret = 0;
out:
	free(data);
	fd_put(h, PART_DEVICE);
	return ret;
}

/* ioas (ops/ioas.rs): detach, attach again, attach to a new IOAS, destroy the handle's. */
static int op_ioas(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	int dev, iommu, ret = -1;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	if (h->via != VIA_IOMMUFD) {
		op_fail(r, "handle \"%s\" was not opened through iommufd", h->name);
		goto out_dev;
	}
	if ((iommu = fd_get(h, PART_CONTAINER)) < 0) {
		op_fail(r, "handle \"%s\": /dev/iommu is closed", h->name);
		goto out_dev;
	}
	switch (s->ioas) {
	case IOAS_DETACH: {
		struct vfio_device_detach_iommufd_pt d = { .argsz = sizeof(d) };
		if (ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d) < 0) {
			sys_fail(r, errno, "VFIO_DEVICE_DETACH_IOMMUFD_PT");
			goto out;
		}
		break;
	}
	case IOAS_ATTACH:
	case IOAS_ATTACH_NEW: {
		struct vfio_device_attach_iommufd_pt att = { .argsz = sizeof(att), .pt_id = h->ioas_id };
		if (s->ioas == IOAS_ATTACH_NEW) {
			struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
			if (ioctl(iommu, IOMMU_IOAS_ALLOC, &alloc) < 0) {
				sys_fail(r, errno, "IOMMU_IOAS_ALLOC");
				goto out;
			}
			att.pt_id = alloc.out_ioas_id;
		}
		if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &att) < 0) {
			sys_fail(r, errno, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
			goto out;
		}
		note(r, "attached ioas %u;", att.pt_id);
		break;
	}
	case IOAS_DESTROY: {
		struct iommu_destroy d = { .size = sizeof(d), .id = h->ioas_id };
		if (ioctl(iommu, IOMMU_DESTROY, &d) < 0) {
			sys_fail(r, errno, "IOMMU_DESTROY");
			goto out;
		}
		break;
	}
	}
	ret = 0;
out:
	fd_put(h, PART_CONTAINER);
out_dev:
	fd_put(h, PART_DEVICE);
	return ret;
}

/* chp (ops/chp.rs): every device of a QEMU guest sits on channel path 0.00, so a vary_off
 * holds the path off for hold_ms and varies it on again in the same step. */
static int op_chp(const struct step *s, struct res *r)
{
	char p[300], v[64];
	switch (s->chp) {
	case CHP_VARY_OFF:
		xsnprintf(p, sizeof(p), "/sys/devices/css0/chp%s/status", s->chpid);
		if (write_attr(r, p, "offline"))
			return -1;
		sleep_ms(s->hold_ms);
		note(r, "while off: %s;", read_attr(p, v, sizeof(v)) ? v : "?");
		return write_attr(r, p, "online");
	case CHP_VARY_ON:
		xsnprintf(p, sizeof(p), "/sys/devices/css0/chp%s/status", s->chpid);
		return write_attr(r, p, "online");
	default:
		xsnprintf(p, sizeof(p), "/sys/devices/css0/chp%s/configure", s->chpid);
		return write_attr(r, p, s->chp == CHP_CONFIGURE ? "1" : "0");
	}
}

/* The `online` file of the ccw device below a subchannel, or NULL. */
static char *ccw_online_path(const char *schid, char *p, size_t n)
{
	char d[300];
	DIR *dir;
	struct dirent *e;
	struct stat st;
	char *found = NULL;
	xsnprintf(d, sizeof(d), CSS "/%s", schid);
	dir = opendir(d);
	while (dir && !found && (e = readdir(dir))) {
		if (strncmp(e->d_name, "0.", 2))
			continue;
		xsnprintf(p, n, "%s/%s/online", d, e->d_name);
		if (!stat(p, &st))
			found = p;
	}
	if (dir)
		closedir(dir);
	return found;
}

/* online (ops/chp.rs): the ccw device's `online`; cleanup brings offlined ones back. */
static int op_online(const struct step *s, struct res *r)
{
	char p[300];
	if (!ccw_online_path(s->schid, p, sizeof(p)))
		return op_fail(r, "subchannel %s has no ccw device", s->schid);
	touch(s->schid);
	if (!s->online) {
		pthread_mutex_lock(&state_lock);
		for (int i = 0; i < MAX_TOUCHED; i++)
			if (!offlined[i][0] || !strcmp(offlined[i], s->schid)) {
				xsnprintf(offlined[i], sizeof(offlined[i]), "%s", s->schid);
				break;
			}
		pthread_mutex_unlock(&state_lock);
	}
	return write_attr(r, p, s->online ? "1" : "0");
}

/* bad_input (ops/bad_input.rs): one call the driver is expected to reject. */
static int op_bad_input(const struct step *s, struct res *r)
{
	struct handle *h = need_handle(s, r);
	const struct region *g;
	unsigned char reg[IO_REGION_SIZE], cmd[CMD_REGION_SIZE] = { 0 }, *dma;
	const char *call = "?";
	ssize_t n = -1;
	int dev, ret = -1;
	if (!h || (dev = need_device(h, r)) < 0)
		return -1;
	switch (s->bad) {
	case BAD_IO_REGION_OFFSET:
	case BAD_IO_REGION_SHORT:
		if (!(g = find_region(h, dev, REGION_IO, r)) || !(dma = ensure_dma(h, r)))
			goto out;
		io_region_start(reg, prepare_sense_id(dma, 0), DMA_IOVA);
		if (s->bad == BAD_IO_REGION_OFFSET) {
			call = "pwrite io region at offset 4";
			n = pwrite(dev, reg, sizeof(reg), g->offset + 4);
		} else {
			call = "pwrite io region short (12 bytes)";
			n = pwrite(dev, reg, IO_REGION_SCSW, g->offset);
		}
		break;
	case BAD_UNMAPPED_CPA:
		if (!(g = find_region(h, dev, REGION_IO, r)))
			goto out;
		io_region_start(reg, ORB1_FORMAT1 | ORB1_PREFETCH, BAD_UNMAPPED_IOVA);
		call = "pwrite io region (unmapped cpa)";
		n = pwrite(dev, reg, sizeof(reg), g->offset);
		break;
	case BAD_FORMAT0_ORB:
		if (!(g = find_region(h, dev, REGION_IO, r)) || !(dma = ensure_dma(h, r)))
			goto out;
		ccw0(dma + DMA_CCW_OFF, CCW_CMD_SENSE_ID, CCW_FLAG_SLI, 8, DMA_IOVA + DMA_DATA_OFF);
		io_region_start(reg, ORB1_PREFETCH, DMA_IOVA + DMA_CCW_OFF);
		call = "pwrite io region (format-0 ORB)";
		n = pwrite(dev, reg, sizeof(reg), g->offset);
		break;
	case BAD_ASYNC_BAD_COMMAND:
		if (!(g = find_region(h, dev, REGION_ASYNC, r)))
			goto out;
		put_be32(cmd, 1u << 7);
		call = "pwrite async region (command 0x80)";
		n = pwrite(dev, cmd, sizeof(cmd), g->offset);
		break;
	case BAD_REGION_INDEX: {
		struct vfio_device_info info = { .argsz = sizeof(info) };
		struct region out;
		if (ioctl(dev, VFIO_DEVICE_GET_INFO, &info) < 0) {
			sys_fail(r, errno, "VFIO_DEVICE_GET_INFO");
			goto out;
		}
		if (region_info(dev, info.num_regions, &out, r))
			goto out;
		call = "VFIO_DEVICE_GET_REGION_INFO";
		n = 0;
		break;
	}
	case BAD_IRQ_INDEX_PAST_LAST: {
		/* vfio_set_irqs_validate_and_prepare refuses an index >= num_irqs before the fd */
		struct vfio_device_info info = { .argsz = sizeof(info) };
		struct vfio_irq_set_eventfd s = { .argsz = sizeof(s), .start = 0, .count = 1, .fd = -1,
			.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER };
		if (ioctl(dev, VFIO_DEVICE_GET_INFO, &info) < 0) {
			sys_fail(r, errno, "VFIO_DEVICE_GET_INFO");
			goto out;
		}
		s.index = info.num_irqs;
		call = "VFIO_DEVICE_SET_IRQS past the last index";
		n = ioctl(dev, VFIO_DEVICE_SET_IRQS, &s);
		break;
	}
	case BAD_ARGSZ_SHORT: {
		/* minsz is offsetofend(num_irqs) = 16: the claim of 12 alone must be refused */
		struct vfio_device_info info = { .argsz = 12 };
		call = "VFIO_DEVICE_GET_INFO argsz 12";
		n = ioctl(dev, VFIO_DEVICE_GET_INFO, &info);
		break;
	}
	}
	if (n < 0) {
		sys_fail(r, errno, "%s", call);
		goto out;
	}
	note(r, "%s: accepted (%zd);", call, n);
	ret = 0;
out:
	fd_put(h, PART_DEVICE);
	return ret;
}

/* snapshot (ops/snapshot.rs): what sysfs says now -- drivers, mdevs, /dev/vfio nodes,
 * vfio_ccw slab objects (each cache shrunk first, so the count is exact) and tasks in D
 * state. ccwrig compares two of these for its leak and hang oracles; here it is printed. */
static int op_snapshot(const struct step *s, struct res *r)
{
	const char *dirs[] = { "/sys/bus/mdev/devices", "/dev/vfio", "/dev/vfio/devices" };
	char p[600], v[64];
	DIR *d;
	struct dirent *e;
	op_list_subchannels(s, r);
	for (int i = 0; i < 3; i++) {
		note(r, "%s:", dirs[i]);
		if ((d = opendir(dirs[i]))) {
			while ((e = readdir(d)))
				if (e->d_name[0] != '.')
					note(r, "%s", e->d_name);
			closedir(d);
		}
		note(r, ";");
	}
	if ((d = opendir("/sys/kernel/slab"))) {
		while ((e = readdir(d))) {
			struct res ignored = { 0 };
			if (strncmp(e->d_name, "vfio_ccw", 8))
				continue;
			xsnprintf(p, sizeof(p), "/sys/kernel/slab/%s/shrink", e->d_name);
			write_attr(&ignored, p, "1");
			xsnprintf(p, sizeof(p), "/sys/kernel/slab/%s/objects", e->d_name);
			read_attr(p, v, sizeof(v));
			v[strcspn(v, " ")] = 0;
			note(r, "slab %s: %s objects;", e->d_name, v);
		}
		closedir(d);
	}
	if ((d = opendir("/proc"))) {
		while ((e = readdir(d))) {
			char stat[512], *close_paren;
			DIR *t;
			struct dirent *te;
			if (e->d_name[0] < '0' || e->d_name[0] > '9')
				continue;
			xsnprintf(p, sizeof(p), "/proc/%s/task", e->d_name);
			if (!(t = opendir(p)))
				continue;
			while ((te = readdir(t))) {
				if (te->d_name[0] == '.')
					continue;
				xsnprintf(p, sizeof(p), "/proc/%s/task/%s/stat", e->d_name, te->d_name);
				read_attr(p, stat, sizeof(stat));
				close_paren = strrchr(stat, ')');
				if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'D') {
					*close_paren = 0;
					xsnprintf(p, sizeof(p), "/proc/%s/task/%s/wchan", e->d_name, te->d_name);
					note(r, "D state: %s (%s) in %s;", te->d_name,
					     strchr(stat, '(') ? strchr(stat, '(') + 1 : stat, read_attr(p, v, sizeof(v)));
				}
			}
			closedir(t);
		}
		closedir(d);
	}
	return 0;
}

/* mark (ops/misc.rs): one line in the kernel log and in the trace buffer. */
static int op_mark(const struct step *s, struct res *r)
{
	char line[600];
	struct res ignored = { 0 };
	xsnprintf(line, sizeof(line), "<5>ccwrig-mark: %s\n", s->text);
	note(r, "kmsg %s;", write_attr(&ignored, "/dev/kmsg", line) ? "no" : "yes");
	xsnprintf(line, sizeof(line), "ccwrig-mark: %s\n", s->text);
	note(r, "trace %s;", write_attr(&ignored, "/sys/kernel/tracing/trace_marker", line) ? "no" : "yes");
	return 0;
}

static int op_sysrq(const struct step *s, struct res *r)
{
	char k[2] = { s->key, 0 };
	return write_attr(r, "/proc/sysrq-trigger", k);
}

/* kmemleak (ops/misc.rs): scan and print the report, or clear; nothing without kmemleak. */
static int op_kmemleak(const struct step *s, struct res *r)
{
	const char *path = "/sys/kernel/debug/kmemleak";
	char buf[4096];
	ssize_t n;
	int fd;
	if (access(path, F_OK) != 0) {
		note(r, "no kmemleak in this kernel");
		return 0;
	}
	if (write_attr(r, path, s->kmemleak_clear ? "clear" : "scan"))
		return -1;
	if (s->kmemleak_clear)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sys_fail(r, errno, "open %s", path);
	fflush(stdout);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	close(fd);
	return 0;
}

/* gcov (ops/gcov.rs): ccwrig reads the counters to measure coverage; a reproducer has no use
 * for them, so a read only says whether the kernel has GCOV, and a reset resets. */
static int op_gcov(const struct step *s, struct res *r)
{
	const char *path = "/sys/kernel/debug/gcov/reset";
	if (access(path, F_OK) != 0) {
		note(r, "no gcov in this kernel");
		return 0;
	}
	if (s->gcov_reset)
		return write_attr(r, path, "1") ? -1 : 0;
	return 0;
}

/* exec (ops/exec.rs): runs a program; its output goes to ours. */
static int op_exec(const struct step *s, struct res *r)
{
	int st;
	pid_t pid;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return sys_fail(r, errno, "fork");
	if (pid == 0) {
		execvp(s->argv[0], (char *const *)s->argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return sys_fail(r, errno, "waitpid");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	return op_fail(r, "%s exited with %d (signal %d)", s->argv[0],
		       WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Waits for the ccw device below `schid` to be online again: giving a subchannel back to
 * io_subchannel only schedules the auto-online, and the next step must not race it. */
/* Returns whether the ccw device came online. */
static int await_online(const char *schid, long wait_ms, struct res *r)
{
	long t0 = now_ms();
	/* Backing off as the agent does (ops/css.rs): at most about 45 polls in any wait. */
	long pause = 5, max_pause = wait_ms / 40 > 50 ? wait_ms / 40 : 50;
	char p[300], v[8];
	for (;;) {
		DIR *d;
		struct dirent *e;
		v[0] = 0;
		xsnprintf(p, sizeof(p), CSS "/%s", schid);
		d = opendir(p);
		while (d && (e = readdir(d)))
			if (!strncmp(e->d_name, "0.", 2)) {
				xsnprintf(p, sizeof(p), CSS "/%s/%s/online", schid, e->d_name);
				read_attr(p, v, sizeof(v));
			}
		if (d)
			closedir(d);
		if (!strcmp(v, "1") || now_ms() - t0 >= wait_ms) {
			note(r, "%s online=%s after %ld ms;", schid, v[0] ? v : "?", now_ms() - t0);
			return !strcmp(v, "1");
		}
		sleep_ms(pause);
		pause = pause * 2 < max_pause ? pause * 2 : max_pause;
	}
}

/* cleanup (ops/cleanup.rs): close every handle, remove every mdev created here, give every
 * touched subchannel back to the driver the machine rests on (s->driver, io_subchannel when
 * unset): to vfio_ccw only once a ccw device the program left under io_subchannel is online.
 * A failing step does not stop the others. */
static int op_cleanup(const struct step *s, struct res *r)
{
	struct res first = { 0 };
	char p[300];
	/* a stalled write keeps the device busy, so its mdev could not be removed */
	for (int i = 0; i < MAX_HANDLES; i++)
		if (handles[i].used)
			abandon_stall(&handles[i], r);
	for (int i = 0; i < MAX_HANDLES; i++) {
		if (!handles[i].used)
			continue;
		note(r, "close %s:", handles[i].name);
		for (int k = 0; k < NPARTS; k++)
			close_part(&handles[i], (enum part)k, r);
	}
	for (int i = 0; i < MAX_MDEVS; i++) {
		struct res one = { 0 };
		struct stat st;
		if (!mdevs[i].used)
			continue;
		mdevs[i].used = 0;
		xsnprintf(p, sizeof(p), "/sys/bus/mdev/devices/%s", mdevs[i].uuid);
		if (stat(p, &st)) {
			note(r, "mdev %s already gone;", mdevs[i].name);
			continue;
		}
		xsnprintf(p, sizeof(p), "/sys/bus/mdev/devices/%s/remove", mdevs[i].uuid);
		if (write_attr(&one, p, "1") && first.kind == RES_OK)
			first = one;
		note(r, "mdev %s removed: %s;", mdevs[i].name, res_short(&one));
	}
	for (int i = 0; i < MAX_TOUCHED && offlined[i][0]; i++) {
		char v[16];
		struct res one = { 0 };
		if (ccw_online_path(offlined[i], p, sizeof(p)) && read_attr(p, v, sizeof(v)) &&
		    !strcmp(v, "0"))
			note(r, "%s set online: %s;", offlined[i],
			     write_attr(&one, p, "1") ? res_short(&one) : "ok");
	}
	memset(offlined, 0, sizeof(offlined));
	for (int i = 0; i < MAX_TOUCHED && touched[i][0]; i++) {
		const char *rest = s->driver && s->driver[0] ? s->driver : "io_subchannel";
		struct step b = { .schid = touched[i], .driver = rest };
		struct res one = { 0 };
		struct stat st;
		char cur[64];
		xsnprintf(p, sizeof(p), CSS "/%s", touched[i]);
		if (stat(p, &st)) {
			note(r, "%s: subchannel gone;", touched[i]);
			continue;
		}
		xsnprintf(p, sizeof(p), CSS "/%s/driver", touched[i]);
		link_name(p, cur, sizeof(cur));
		if (strcmp(rest, "io_subchannel") && !strcmp(cur, "io_subchannel") &&
		    !await_online(touched[i], (long)s->ms, r))
			continue;
		if (op_bind(&b, &one) && first.kind == RES_OK)
			first = one;
		note(r, "%s back to %s: %s;", touched[i], rest, res_short(&one));
		if (one.kind == RES_OK && !strcmp(rest, "io_subchannel"))
			await_online(touched[i], (long)s->ms, r);
	}
	memset(touched, 0, sizeof(touched));
	if (first.kind != RES_OK) {
		r->kind = first.kind;
		r->err = first.err;
		memcpy(r->call, first.call, sizeof(r->call));
		return -1;
	}
	return 0;
}

/* ---- host steps ------------------------------------------------------------------- */

struct host_cmd {
	const char *op;
	const char *cmd; /* NULL: pause and ask the operator */
};

static const char *host_cmd_for(const char *op);
static const char *devno_of(const char *device);

/* A hypervisor step: run the user's command for it, or ask the operator and wait. The
 * command gets CCWRIG_HOST_OP, CCWRIG_DEVICE, CCWRIG_DEVNO and CCWRIG_HOST_STEP (1, 2, ...)
 * in its environment. */
static int host_step(const struct step *s, struct res *r)
{
	static int seq;
	const char *cmd = host_cmd_for(s->host_op);
	char n[16];
	int st;
	xsnprintf(n, sizeof(n), "%d", __atomic_add_fetch(&seq, 1, __ATOMIC_SEQ_CST));
	/* With --kmsg the step is announced on the kernel log first, in a fixed form a
	 * hypervisor-side script watching the console can act on. */
	if (kmsg_fd >= 0)
		kmsg("ccwrig-host-step %s %s %s", n, s->host_op, s->device ? s->device : "");
	if (cmd) {
		setenv("CCWRIG_HOST_OP", s->host_op, 1);
		setenv("CCWRIG_DEVICE", s->device ? s->device : "", 1);
		setenv("CCWRIG_DEVNO", s->device ? devno_of(s->device) : "", 1);
		setenv("CCWRIG_HOST_STEP", n, 1);
		say("host step %s: %s: running: %s", n, s->what, cmd);
		fflush(stdout);
		st = system(cmd);
		if (st == -1)
			return sys_fail(r, errno, "system(%s)", cmd);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			return op_fail(r, "host command exited with %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return 0;
	}
	say("");
	say("*** HOST STEP %s: %s", n, s->what);
	say("*** %s", s->text);
	say("*** Do it on the hypervisor now, then press Enter here. (Other threads keep running:");
	say("*** for the scenario's timing give `--host-cmd %s=COMMAND` instead.)", s->host_op);
	if (!isatty(0)) {
		/* not interactive: reading would return at once and ruin the timing */
		return op_fail(r, "no --host-cmd for %s and stdin is not a terminal", s->host_op);
	}
	{
		char line[64];
		if (!fgets(line, sizeof(line), stdin))
			return op_fail(r, "stdin closed before the operator confirmed %s", s->host_op);
	}
	return 0;
}

/* ---- running steps with deadlines ----------------------------------------------------- */

static int do_op(const struct step *s, struct res *r)
{
	switch (s->op) {
	case OP_LIST_SUBCHANNELS: return op_list_subchannels(s, r);
	case OP_BIND: return op_bind(s, r);
	case OP_UNBIND: return op_unbind(s, r);
	case OP_RESCAN: return op_rescan(s, r);
	case OP_MDEV_CREATE: return op_mdev_create(s, r);
	case OP_MDEV_REMOVE: return op_mdev_remove(s, r);
	case OP_AVAILABLE_INSTANCES: return op_available_instances(s, r);
	case OP_OPEN: return op_open(s, r);
	case OP_CLOSE: return op_close(s, r);
	case OP_GET_INFO: return op_get_info(s, r);
	case OP_CONSUMER: return op_consumer(s, r);
	case OP_RESET: return op_reset(s, r);
	case OP_AWAIT_REQUEST: return op_await_request(s, r);
	case OP_DMA_UNMAP: return op_dma_unmap(s, r);
	case OP_SET_IRQ: return op_set_irq(s, r);
	case OP_IO: return op_io(s, r);
	case OP_IO_STALL: return op_io_stall(s, r);
	case OP_IO_RELEASE: return op_io_release(s, r);
	case OP_HALT: return op_async(s, r, 0);
	case OP_CLEAR: return op_async(s, r, 1);
	case OP_READ_REGION: return op_read_region(s, r);
	case OP_BAD_INPUT: return op_bad_input(s, r);
	case OP_REGION_ACCESS: return op_region_access(s, r);
	case OP_IOAS: return op_ioas(s, r);
	case OP_CHP: return op_chp(s, r);
	case OP_ONLINE: return op_online(s, r);
	case OP_SLEEP: sleep_ms(s->ms); return 0;
	case OP_SNAPSHOT: return op_snapshot(s, r);
	case OP_MARK: return op_mark(s, r);
	case OP_SYSRQ: return op_sysrq(s, r);
	case OP_KMEMLEAK: return op_kmemleak(s, r);
	case OP_GCOV: return op_gcov(s, r);
	case OP_EXEC: return op_exec(s, r);
	case OP_CLEANUP: return op_cleanup(s, r);
	case OP_HOST: return host_step(s, r);
	case OP_BARRIER: return 0;
	}
	return op_fail(r, "unknown op %d", (int)s->op);
}

/* Each operation runs on its own thread, as in the agent: after its deadline the actor
 * moves on ("blocked") and the call's final result is printed when it comes ("late"). */
struct job {
	const struct step *s;
	const char *actor;
	int rep, index;
	long t0;
	pthread_t thread;
	pthread_mutex_t m;
	pthread_cond_t c;
	int done;
	struct res r;
	struct job *next; /* in the list of blocked jobs */
};

static struct job *blocked_jobs;
static pthread_mutex_t blocked_lock = PTHREAD_MUTEX_INITIALIZER;

/* fail_nth: the op's thread's nth fault point fails (a kernel with fault injection whose
 * failslab and fail_page_alloc do not spare sleeping allocations: ignore-gfp-wait = N). */
static void op_with_fault(const struct step *s, struct res *r)
{
	const char *path = "/proc/thread-self/fail-nth";
	char n[16];
	int fd;
	if (!s->fail_nth) {
		do_op(s, r);
		return;
	}
	xsnprintf(n, sizeof(n), "%u", s->fail_nth);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || write(fd, n, strlen(n)) < 0) {
		if (fd >= 0)
			close(fd);
		do_op(s, r);
		note(r, "no fault injection in this kernel");
		return;
	}
	do_op(s, r);
	memset(n, 0, sizeof(n));
	if (pread(fd, n, sizeof(n) - 1, 0) > 0)
		note(r, atoi(n) == 0 ? "fault %u injected" : "fault %u not reached", s->fail_nth);
	if (write(fd, "0", 1) < 0)
		note(r, "fail-nth not reset");
	close(fd);
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	struct res r = { 0 };
	char tname[16];
	xsnprintf(tname, sizeof(tname), "%s-%d", j->actor, j->index);
	pthread_setname_np(pthread_self(), tname);
	op_with_fault(j->s, &r);
	pthread_mutex_lock(&j->m);
	j->r = r;
	j->done = 1;
	pthread_cond_signal(&j->c);
	pthread_mutex_unlock(&j->m);
	return NULL;
}

static void run_step(const char *actor, int rep, int index, const struct step *s)
{
	struct job *j = calloc(1, sizeof(*j));
	struct timespec until;
	int done;
	if (!j) {
		say("%s step %d: out of memory", actor, index);
		exit(2);
	}
	j->s = s;
	j->actor = actor;
	j->rep = rep;
	j->index = index;
	j->t0 = now_ms();
	pthread_mutex_init(&j->m, NULL);
	pthread_cond_init(&j->c, NULL);
	if (pthread_create(&j->thread, NULL, job_main, j)) {
		say("%s step %d: cannot start a thread", actor, index);
		exit(2);
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += s->deadline_ms / 1000;
	until.tv_nsec += (long)(s->deadline_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&j->m);
	while (!j->done && pthread_cond_timedwait(&j->c, &j->m, &until) == 0)
		;
	done = j->done;
	pthread_mutex_unlock(&j->m);
	if (done) {
		pthread_join(j->thread, NULL);
		report(actor, rep, index, s, &j->r, now_ms() - j->t0, 0);
		free(j);
		return;
	}
	{
		struct res b = { .kind = RES_BLOCKED };
		xsnprintf(b.info, sizeof(b.info), "still in the kernel after %u ms; moving on", s->deadline_ms);
		report(actor, rep, index, s, &b, now_ms() - j->t0, 0);
	}
	pthread_mutex_lock(&blocked_lock);
	j->next = blocked_jobs;
	blocked_jobs = j;
	pthread_mutex_unlock(&blocked_lock);
}

/* Waits (up to ms in all) for the blocked steps; one that finishes must finish well: ok, or
 * an errno the step allowed. One still blocked then counts as a hang. */
static void collect_late(long ms)
{
	long end = now_ms() + ms;
	struct job *j;
	pthread_mutex_lock(&blocked_lock);
	j = blocked_jobs;
	blocked_jobs = NULL;
	pthread_mutex_unlock(&blocked_lock);
	for (; j; j = j->next) {
		int done;
		for (;;) {
			pthread_mutex_lock(&j->m);
			done = j->done;
			pthread_mutex_unlock(&j->m);
			if (done || now_ms() >= end)
				break;
			sleep_ms(10);
		}
		if (done) {
			report(j->actor, j->rep, j->index, j->s, &j->r, now_ms() - j->t0, 1);
		} else {
			__atomic_add_fetch(&unexpected, 1, __ATOMIC_SEQ_CST);
			say("HANG: %s rep %d step %d %s still blocked after %ld ms", j->actor, j->rep,
			    j->index, j->s->what, now_ms() - j->t0);
		}
	}
}

static void run_sequence(const char *who, const struct step *steps, int n)
{
	for (int i = 0; i < n; i++)
		if (steps[i].op != OP_BARRIER)
			run_step(who, 0, i, &steps[i]);
}

/* ---- actors ------------------------------------------------------------------------- */

struct barrier {
	const char *name;
	unsigned count; /* how many actors meet there */
	pthread_barrier_t b;
};

static struct barrier *barrier_find(const char *name);

struct actor_run {
	const struct actor *a;
	int rep;
};

static void *actor_main(void *arg)
{
	struct actor_run *ar = arg;
	const struct actor *a = ar->a;
	int after_barrier = 0;
	for (int i = 0; i < a->nsteps; i++) {
		const struct step *s = &a->steps[i];
		if (s->op == OP_BARRIER) {
			struct barrier *b = barrier_find(s->barrier);
			if (b)
				pthread_barrier_wait(&b->b);
			after_barrier = 1;
			continue;
		}
		if (after_barrier && a->jitter_ms && a->jitter_ms[ar->rep * a->nsteps + i])
			sleep_ms(a->jitter_ms[ar->rep * a->nsteps + i]);
		after_barrier = 0;
		/* host steps run on the actor's thread with no deadline, as ccwrig's host does */
		if (s->op == OP_HOST) {
			struct res r = { 0 };
			long t0 = now_ms();
			host_step(s, &r);
			report(a->name, ar->rep, i, s, &r, now_ms() - t0, 0);
		} else {
			run_step(a->name, ar->rep, i, s);
		}
	}
	return NULL;
}
