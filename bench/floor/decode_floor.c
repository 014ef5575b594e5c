/*
 * The decoder's own cost per image, with nothing around it: libjpeg-turbo (full size or DCT-scaled
 * 1/2, 1/4, 1/8) and libtiff (every strip) decoding files already in memory into one reused buffer.
 * Both PIL and libvips decode through these libraries, so no preprocessing pipeline built on them
 * can take less per image on one core. See bench/RESULTS.md (data pipeline).
 *
 *   apt-get install -y --no-install-recommends libjpeg62-turbo-dev libtiff-dev
 *   gcc -O2 bench/floor/decode_floor.c -o /tmp/decode_floor -ljpeg -ltiff
 *   taskset -c 0 /tmp/decode_floor jpeg 8 LIST [SECONDS]   # 1/8-scaled JPEG decode
 *   taskset -c 0 /tmp/decode_floor tiff 1 LIST [SECONDS]   # TIFF decode
 *
 * LIST: a file with one image path per line. Runs whole passes over the list, at least 3 and for at
 * least SECONDS (default 0), and prints ms per image for each pass, then for all passes together
 * ("all passes": the sustained rate, measured the way bench/data.ts measures the pipelines), wall
 * time and CPU time of the process (the CPU figure holds up better on a machine shared with others).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>
#include <tiffio.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void decode_jpeg(const unsigned char* data, long size, int denom, unsigned char* out) {
  struct jpeg_decompress_struct c;
  struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e);
  jpeg_create_decompress(&c);
  jpeg_mem_src(&c, data, (unsigned long)size);
  jpeg_read_header(&c, TRUE);
  c.scale_num = 1;
  c.scale_denom = denom;
  c.out_color_space = JCS_RGB;
  jpeg_start_decompress(&c);
  while (c.output_scanline < c.output_height) {
    unsigned char* row = out + (size_t)c.output_scanline * c.output_width * 3;
    jpeg_read_scanlines(&c, &row, 1);
  }
  jpeg_finish_decompress(&c);
  jpeg_destroy_decompress(&c);
}

static void decode_tiff(const char* path, unsigned char* out) {
  /* libtiff reads the file itself (page cache after the first pass) */
  TIFF* t = TIFFOpen(path, "r");
  if (!t) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(1);
  }
  tstrip_t strips = TIFFNumberOfStrips(t);
  tmsize_t strip = TIFFStripSize(t);
  unsigned char* p = out;
  for (tstrip_t s = 0; s < strips; s++) p += TIFFReadEncodedStrip(t, s, p, strip);
  TIFFClose(t);
}

int main(int argc, char** argv) {
  if ((argc != 4 && argc != 5) || (strcmp(argv[1], "jpeg") && strcmp(argv[1], "tiff"))) {
    fprintf(stderr, "usage: decode_floor jpeg|tiff DENOM LIST [SECONDS]\n");
    return 2;
  }
  const int jpeg = strcmp(argv[1], "jpeg") == 0, denom = atoi(argv[2]);
  const double min_ms = argc == 5 ? atof(argv[4]) * 1e3 : 0;
  FILE* list = fopen(argv[3], "r");
  if (!list) {
    fprintf(stderr, "cannot open %s\n", argv[3]);
    return 2;
  }
  enum { kMax = 1024 };
  static char paths[kMax][1024];
  static unsigned char* data[kMax];
  static long sizes[kMax];
  int n = 0;
  while (n < kMax && fscanf(list, "%1023s", paths[n]) == 1) {
    FILE* f = fopen(paths[n], "rb");
    if (!f) {
      fprintf(stderr, "cannot open %s\n", paths[n]);
      return 1;
    }
    fseek(f, 0, SEEK_END);
    sizes[n] = ftell(f);
    rewind(f);
    data[n] = malloc(sizes[n]);
    if (fread(data[n], 1, sizes[n], f) != (size_t)sizes[n]) return 1;
    fclose(f);
    n++;
  }
  unsigned char* out = malloc((size_t)8192 * 8192 * 3);
  const double start = now_ms();
  const clock_t start_cpu = clock();
  int pass = 0;
  for (; pass < 3 || now_ms() - start < min_ms; pass++) {
    double t0 = now_ms();
    clock_t c0 = clock();
    for (int i = 0; i < n; i++) jpeg ? decode_jpeg(data[i], sizes[i], denom, out) : decode_tiff(paths[i], out);
    double cpu = (double)(clock() - c0) * 1000.0 / CLOCKS_PER_SEC;
    printf("%s%s: %.4f ms per image (%d images, pass %d), %.4f ms CPU\n", argv[1],
           jpeg ? (denom == 1 ? " full" : denom == 2 ? " 1/2" : denom == 4 ? " 1/4" : " 1/8") : "",
           (now_ms() - t0) / n, n, pass + 1, cpu / n);
  }
  printf("all passes: %.4f ms per image (%d images, %d passes), %.4f ms CPU\n", (now_ms() - start) / (n * pass),
         n * pass, pass, (double)(clock() - start_cpu) * 1000.0 / CLOCKS_PER_SEC / (n * pass));
  return 0;
}
