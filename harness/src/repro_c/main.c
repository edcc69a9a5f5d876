/* ====================================================================================
 * main: setup, then the actors as threads (`repeat` times, meeting at their barriers),
 * the late results of blocked steps, teardown, and a final cleanup -- ccwrig's order.
 * ==================================================================================== */

static struct barrier *barrier_find(const char *name)
{
	for (int i = 0; i < NBARRIERS; i++)
		if (!strcmp(barriers[i].name, name))
			return &barriers[i];
	return NULL;
}

static const char *host_cmd_for(const char *op)
{
	for (int i = 0; i < NHOST_CMDS; i++)
		if (!strcmp(host_cmds[i].op, op))
			return host_cmds[i].cmd;
	return NULL;
}

static const char *devno_of(const char *device)
{
	for (int i = 0; i < NDEVICES; i++)
		if (!strcmp(machine_devices[i].id, device))
			return machine_devices[i].devno;
	return "";
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--host-cmd OP=COMMAND]... [--kmsg]\n"
		"  --host-cmd OP=COMMAND  run COMMAND (with sh -c) for each host step OP\n"
		"                         (device_del, device_add, stop, cont, system_reset) instead\n"
		"                         of pausing; it gets CCWRIG_HOST_OP, CCWRIG_DEVICE,\n"
		"                         CCWRIG_DEVNO and CCWRIG_HOST_STEP in its environment\n"
		"  --kmsg                 also write every line to /dev/kmsg (the console shows\n"
		"                         the steps next to the kernel's messages), and announce\n"
		"                         each host step there as `ccwrig-host-step N OP DEVICE`\n"
		"                         before running its command\n",
		argv0);
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--kmsg")) {
			kmsg_fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
			if (kmsg_fd < 0)
				fprintf(stderr, "--kmsg: open /dev/kmsg: %s\n", strerror(errno));
		} else if (!strcmp(argv[i], "--host-cmd") && i + 1 < argc) {
			char *arg = argv[++i], *eq = strchr(arg, '=');
			int found = 0;
			if (!eq)
				usage(argv[0]);
			*eq = 0;
			for (int k = 0; k < NHOST_CMDS; k++)
				if (!strcmp(host_cmds[k].op, arg)) {
					host_cmds[k].cmd = eq + 1;
					found = 1;
				}
			if (!found) {
				fprintf(stderr, "--host-cmd: no host operation \"%s\"\n", arg);
				usage(argv[0]);
			}
		} else {
			usage(argv[0]);
		}
	}
}

int main(int argc, char **argv)
{
	struct utsname u;
	parse_args(argc, argv);
	clock_gettime(CLOCK_MONOTONIC, &t_start);
	setvbuf(stdout, NULL, _IOLBF, 0);
	uname(&u);
	say("ccwrig reproducer: scenario %s, seed %llu, repeat %d, on %s %s", SCENARIO, SEED, REPEAT,
	    u.sysname, u.release);

	run_sequence("setup", setup_steps, NSETUP);
	for (int rep = 0; rep < REPEAT; rep++) {
		pthread_t t[NACTORS];
		struct actor_run ar[NACTORS];
		for (int i = 0; i < NBARRIERS; i++)
			pthread_barrier_init(&barriers[i].b, NULL, barriers[i].count);
		for (int i = 0; i < NACTORS; i++) {
			ar[i].a = &actors[i];
			ar[i].rep = rep;
			if (pthread_create(&t[i], NULL, actor_main, &ar[i])) {
				say("cannot start actor %s", actors[i].name);
				return 2;
			}
		}
		for (int i = 0; i < NACTORS; i++)
			pthread_join(t[i], NULL);
		for (int i = 0; i < NBARRIERS; i++)
			pthread_barrier_destroy(&barriers[i].b);
	}
	collect_late(LATE_ALLOWANCE_MS);
	run_sequence("teardown", teardown_steps, NTEARDOWN);
	collect_late(LATE_ALLOWANCE_MS);
	/* what the scenario left open or created is released, as ccwrig does after each run */
	run_step("check", 0, 0, &final_cleanup);
	collect_late(LATE_ALLOWANCE_MS);
	say("done: %d unexpected outcome(s)%s", unexpected,
	    unexpected ? "" : "; look at the kernel log (dmesg) for what ccwrig also judges");
	return unexpected ? 1 : 0;
}
