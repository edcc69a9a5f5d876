/* segv: a user process that faults on a kernel-unmapped address, to record the
 * s390 "User process fault" report (not a kernel crash). */
int main(void)
{
	volatile int *p = (volatile int *)0x10;
	return *p;
}
