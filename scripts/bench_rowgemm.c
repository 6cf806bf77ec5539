/* The batch-invariant matmul (Sources/CKernels/include/cerm_rowgemm.h) against OpenBLAS sgemm at
 * SmolLM2-135M's decode shapes, one thread, both kernel variants, and whether they give the same
 * bits (BENCHMARKS.md, "AVX2 kernels"). Run by hand:
 *
 *   clang -O2 -ISources/CKernels/include -I/usr/include/x86_64-linux-gnu/openblas-pthread \
 *         scripts/bench_rowgemm.c -o /tmp/bench_rowgemm -lopenblas -lm
 *   OPENBLAS_CORETYPE=Haswell /tmp/bench_rowgemm     # the AVX2 sgemm kernels cerm pins
 *
 * B (the weights) is the same buffer every repetition, so both sides run cache-warm: this measures
 * the kernels, not a decode step's stream of all weights from memory.
 */
#include "cerm_rowgemm.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int shapes[][3]={{32,576,576},{32,1536,576},{32,576,1536},{8,1536,576},{32,49152,576}};
  openblas_set_num_threads(1);
  for(int s=0;s<5;s++){
    int m=shapes[s][0],n=shapes[s][1],k=shapes[s][2];
    float*a=malloc(4L*m*k),*b=malloc(4L*n*k),*c=malloc(4L*m*n),*c2=malloc(4L*m*n);
    for(long i=0;i<(long)m*k;i++)a[i]=(float)((i*7)%13-6)/7;
    for(long i=0;i<(long)n*k;i++)b[i]=(float)((i*5)%11-5)/9;
    double flops=2.0*m*n*k; int reps=(int)(2e9/flops)+1;
    double best[3]={1e9,1e9,1e9};
    for(int trial=0;trial<5;trial++){
      double t=now(); for(int r=0;r<reps;r++) cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,m,n,k,1,a,k,b,k,0,c,n); t=(now()-t)/reps; if(t<best[0])best[0]=t;
      for(int v=1;v<=2;v++){ t=now(); for(int r=0;r<reps;r++) cerm_rowgemm_columns(m,0,n,k,a,k,b,k,c2,n,0,v); t=(now()-t)/reps; if(t<best[v])best[v]=t; }
    }
    cerm_rowgemm_columns(m,0,n,k,a,k,b,k,c,n,0,1); cerm_rowgemm_columns(m,0,n,k,a,k,b,k,c2,n,0,2);
    printf("m%d n%d k%d: sgemm %.1f GFLOP/s, avx2 %.1f (%.0f%% of sgemm), avx512 %.1f (%.0f%%), same bits %d\n",m,n,k,flops/best[0]/1e9,flops/best[1]/1e9,100*best[0]/best[1],flops/best[2]/1e9,100*best[0]/best[2], memcmp(c,c2,4L*m*n)==0);
  }
}
