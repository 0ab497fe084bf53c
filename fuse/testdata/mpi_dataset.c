/*
 * mpi_dataset: the MPI job of TestMPISharedDataset (fuse/mpi_test.go).
 *
 * usage: mpi_dataset MOUNT_A MOUNT_B DIR INPUT_SIZE INPUT_FNV1A RANK_BASE RANK_STEP SHARED_BLOCK MPIIO_BLOCK
 *
 * Rank r works on mount r%2 (MOUNT_A or MOUNT_B, the same Strata file
 * system mounted twice), under DIR there:
 *   1. reads DIR/input.dat whole and checks its size and FNV-1a 64 hash;
 *   2. writes DIR/rank-R.dat: RANK_BASE + r*RANK_STEP bytes of stream 100+r;
 *   3. pwrites bytes [r*SHARED_BLOCK, (r+1)*SHARED_BLOCK) of DIR/shared.dat,
 *      stream 200+r, through a POSIX descriptor (the file is opened with
 *      O_CREAT by every rank at once);
 *   4. writes bytes [r*MPIIO_BLOCK, (r+1)*MPIIO_BLOCK) of DIR/mpiio.dat,
 *      stream 300+r, with MPI_File_write_at_all (ROMIO; each rank names
 *      the file through its own mount);
 * each file fsynced and closed, then MPI_Barrier. Any failure aborts the
 * job with a message on stderr naming the rank.
 *
 * Stream s is the little-endian bytes of splitmix64 seeded with s, as
 * fuse/mpi_test.go generates it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int rank;

static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "rank %d: ", rank);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	fflush(stderr);
	MPI_Abort(MPI_COMM_WORLD, 2);
	exit(2);
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* stream returns n bytes of stream seed. */
static unsigned char *stream(uint64_t seed, size_t n)
{
	unsigned char *b = malloc(n + 8);
	if (b == NULL)
		die("malloc %zu: out of memory", n);
	uint64_t s = seed;
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = splitmix64(&s);
		for (int k = 0; k < 8; k++)
			b[i + k] = (unsigned char)(v >> (8 * k));
	}
	return b;
}

static uint64_t parse(const char *what, const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno != 0 || *s == '\0' || *end != '\0')
		die("bad %s %s", what, s);
	return v;
}

static void check_input(const char *path, uint64_t size, uint64_t want)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	/* An odd buffer size: reads start at offsets that are not aligned. */
	size_t cap = (1 << 20) + 333;
	unsigned char *buf = malloc(cap);
	uint64_t h = 0xcbf29ce484222325ULL, total = 0;
	for (;;) {
		ssize_t n = read(fd, buf, cap);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("read %s at %" PRIu64 ": %s", path, total, strerror(errno));
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			h ^= buf[i];
			h *= 0x100000001b3ULL;
		}
		total += (uint64_t)n;
	}
	if (close(fd) != 0)
		die("close %s: %s", path, strerror(errno));
	free(buf);
	if (total != size || h != want)
		die("%s: read %" PRIu64 " bytes with FNV-1a 0x%016" PRIx64 ", want %" PRIu64 " bytes with 0x%016" PRIx64,
		    path, total, h, size, want);
	printf("rank %d: input %" PRIu64 " bytes fnv1a 0x%016" PRIx64 " ok\n", rank, total, h);
}

static void pwrite_all(int fd, const char *path, const unsigned char *p, size_t n, off_t off)
{
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("pwrite %s at %lld: %s", path, (long long)off, strerror(errno));
		}
		p += w;
		n -= (size_t)w;
		off += w;
	}
}

static void sync_close(int fd, const char *path)
{
	if (fsync(fd) != 0)
		die("fsync %s: %s", path, strerror(errno));
	if (close(fd) != 0)
		die("close %s: %s", path, strerror(errno));
}

static void write_own(const char *path, uint64_t n)
{
	unsigned char *data = stream(100 + (uint64_t)rank, n);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("create %s: %s", path, strerror(errno));
	/* Sequential writes of an odd size, as a program's stdio would. */
	size_t piece = 64 * 1024 + 7;
	for (uint64_t off = 0; off < n; off += piece) {
		size_t k = n - off < piece ? (size_t)(n - off) : piece;
		ssize_t w = write(fd, data + off, k);
		if (w != (ssize_t)k)
			die("write %s at %" PRIu64 ": %zd: %s", path, off, w, strerror(errno));
	}
	sync_close(fd, path);
	free(data);
}

static void write_shared(const char *path, uint64_t block)
{
	unsigned char *data = stream(200 + (uint64_t)rank, block);
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	pwrite_all(fd, path, data, block, (off_t)rank * (off_t)block);
	sync_close(fd, path);
	free(data);
}

static void mpi_die(const char *what, const char *path, int rc)
{
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(rc, msg, &len);
	die("%s %s: %s", what, path, msg);
}

static void write_mpiio(const char *path, uint64_t block)
{
	unsigned char *data = stream(300 + (uint64_t)rank, block);
	MPI_File fh;
	int rc = MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &fh);
	if (rc != MPI_SUCCESS)
		mpi_die("MPI_File_open", path, rc);
	MPI_Status st;
	rc = MPI_File_write_at_all(fh, (MPI_Offset)rank * (MPI_Offset)block, data, (int)block, MPI_BYTE, &st);
	if (rc != MPI_SUCCESS)
		mpi_die("MPI_File_write_at_all", path, rc);
	int count = 0;
	MPI_Get_count(&st, MPI_BYTE, &count);
	if ((uint64_t)count != block)
		die("MPI_File_write_at_all %s: wrote %d bytes, want %" PRIu64, path, count, block);
	rc = MPI_File_sync(fh);
	if (rc != MPI_SUCCESS)
		mpi_die("MPI_File_sync", path, rc);
	rc = MPI_File_close(&fh);
	if (rc != MPI_SUCCESS)
		mpi_die("MPI_File_close", path, rc);
	free(data);
}

int main(int argc, char **argv)
{
	int size;
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (argc != 10)
		die("usage: %s MOUNT_A MOUNT_B DIR INPUT_SIZE INPUT_FNV1A RANK_BASE RANK_STEP SHARED_BLOCK MPIIO_BLOCK", argv[0]);
	const char *mp = argv[1 + rank % 2], *dir = argv[3];
	uint64_t in_size = parse("INPUT_SIZE", argv[4]), in_sum = parse("INPUT_FNV1A", argv[5]);
	uint64_t base = parse("RANK_BASE", argv[6]), step = parse("RANK_STEP", argv[7]);
	uint64_t shared = parse("SHARED_BLOCK", argv[8]), mpiio = parse("MPIIO_BLOCK", argv[9]);
	if (mpiio > 1u << 30)
		die("MPIIO_BLOCK %" PRIu64 " too large for one call", mpiio);

	char path[4096];
	snprintf(path, sizeof path, "%s/%s/input.dat", mp, dir);
	check_input(path, in_size, in_sum);

	snprintf(path, sizeof path, "%s/%s/rank-%d.dat", mp, dir, rank);
	write_own(path, base + (uint64_t)rank * step);

	snprintf(path, sizeof path, "%s/%s/shared.dat", mp, dir);
	write_shared(path, shared);

	snprintf(path, sizeof path, "%s/%s/mpiio.dat", mp, dir);
	write_mpiio(path, mpiio);

	MPI_Barrier(MPI_COMM_WORLD);
	printf("rank %d of %d: done\n", rank, size);
	fflush(stdout);
	MPI_Finalize();
	return 0;
}
