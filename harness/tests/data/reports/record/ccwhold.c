/* ccwhold: open a vfio-ccw mdev through the group/container path and hold the
 * device fd until SIGTERM/SIGINT or N seconds pass, so that remove and
 * hot-unplug can be recorded while a user holds the device (docs/DESIGN.md,
 * 'Unplug and remove while a user holds the device'). */
#include <fcntl.h>
#include <linux/vfio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: ccwhold GROUP UUID SECONDS\n");
		return 2;
	}
	char gpath[64];
	snprintf(gpath, sizeof gpath, "/dev/vfio/%s", argv[1]);
	int c = open("/dev/vfio/vfio", O_RDWR);
	int g = open(gpath, O_RDWR);
	if (c < 0 || g < 0) { perror("open"); return 1; }
	if (ioctl(g, VFIO_GROUP_SET_CONTAINER, &c)) { perror("SET_CONTAINER"); return 1; }
	if (ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)) { perror("SET_IOMMU"); return 1; }
	int d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, argv[2]);
	if (d < 0) { perror("GET_DEVICE_FD"); return 1; }
	struct sigaction sa = { .sa_handler = on_sig };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("ccwhold: holding device fd %d\n", d);
	fflush(stdout);
	for (int i = 0; i < atoi(argv[3]) * 10 && !stop; i++)
		usleep(100000);
	close(d);
	close(g);
	close(c);
	printf("ccwhold: released\n");
	return 0;
}
