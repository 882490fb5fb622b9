#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <string.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
void report(const char*n,double*v,int k){qsort(v,k,sizeof(double),cmp);printf("%-28s p50 %6.1f p90 %6.1f p99 %6.1f us\n",n,v[k/2],v[k*9/10],v[k*99/100]);}
int main(int argc,char**argv){
  int N=3000; size_t SZ=16<<20; int rec=atoi(argv[1]);
  double *v=malloc(N*sizeof(double));
  char *buf; posix_memalign((void**)&buf,4096,1<<20); memset(buf,'x',1<<20);
  // prepare preallocated zero file
  int fd=open("seg",O_CREAT|O_RDWR|O_TRUNC,0644); char*z=calloc(1,SZ); write(fd,z,SZ); fsync(fd); close(fd);
  fd=open("seg",O_RDWR); off_t off=0;
  for(int i=0;i<N;i++){double t=now(); pwrite(fd,buf,rec,off); fdatasync(fd); v[i]=now()-t; off+=rec;}
  report("pwrite+fdatasync",v,N); close(fd);
  fd=open("seg",O_CREAT|O_RDWR|O_TRUNC,0644); write(fd,z,SZ); fsync(fd); close(fd);
  fd=open("seg",O_RDWR|O_DIRECT|O_DSYNC); off=0;
  for(int i=0;i<N;i++){ off_t a=off&~4095; size_t len=((off+rec+4095)&~4095)-a; double t=now(); if(pwrite(fd,buf,len,a)<0){perror("pw");return 1;} v[i]=now()-t; off+=rec;}
  report("O_DIRECT|O_DSYNC pwrite",v,N); close(fd);
  fd=open("seg",O_CREAT|O_RDWR|O_TRUNC,0644); write(fd,z,SZ); fsync(fd); close(fd);
  fd=open("seg",O_RDWR|O_DIRECT); off=0;
  for(int i=0;i<N;i++){ off_t a=off&~4095; size_t len=((off+rec+4095)&~4095)-a; double t=now(); pwrite(fd,buf,len,a); fdatasync(fd); v[i]=now()-t; off+=rec;}
  report("O_DIRECT pwrite+fdatasync",v,N); close(fd);
  fd=open("seg",O_CREAT|O_RDWR|O_TRUNC,0644); write(fd,z,SZ); fsync(fd); close(fd);
  fd=open("seg",O_RDWR|O_DSYNC); off=0;
  for(int i=0;i<N;i++){double t=now(); pwrite(fd,buf,rec,off); v[i]=now()-t; off+=rec;}
  report("O_DSYNC pwrite (buffered)",v,N); close(fd);
  return 0;}
