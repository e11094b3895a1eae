#include "streams.h"

#include <pthread.h>
#include <stdlib.h>

#include <grpc/support/time.h>

struct streams {
	grpc_completion_queue *cq;
	pthread_t thread;
	bool is_started;
	void (*tick)(void *arg);
	void *tick_arg;
	unsigned tick_ms;
};

struct streams *streams_new(grpc_server *server)
{
	struct streams *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(server, s->cq, NULL);
	return s;
}

grpc_completion_queue *streams_cq(struct streams *s)
{
	return s->cq;
}

static gpr_timespec after_ms(unsigned ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			    gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static void *streams_main(void *arg)
{
	struct streams *s = arg;
	gpr_timespec next_tick = after_ms(s->tick_ms);

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			s->cq, s->tick ? next_tick
				       : gpr_inf_future(GPR_CLOCK_MONOTONIC),
			NULL);

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE) {
			struct stream_tag *tag = ev.tag;

			tag->on_done(tag, ev.success != 0);
		}
		if (s->tick &&
		    gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), next_tick) >= 0) {
			s->tick(s->tick_arg);
			next_tick = after_ms(s->tick_ms);
		}
	}
	return NULL;
}

int streams_start(struct streams *s, void (*tick)(void *arg), void *arg,
		  unsigned tick_ms)
{
	s->tick = tick;
	s->tick_arg = arg;
	s->tick_ms = tick_ms ? tick_ms : 1000;
	if (pthread_create(&s->thread, NULL, streams_main, s) != 0)
		return -1;
	s->is_started = true;
	return 0;
}

void streams_stop(struct streams *s)
{
	if (!s || !s->cq)
		return;
	grpc_completion_queue_shutdown(s->cq);
	if (s->is_started) {
		pthread_join(s->thread, NULL);
	} else {
		for (;;) {
			grpc_event ev = grpc_completion_queue_next(
				s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
				NULL);
			if (ev.type == GRPC_QUEUE_SHUTDOWN)
				break;
			if (ev.type == GRPC_OP_COMPLETE)
				((struct stream_tag *)ev.tag)
					->on_done(ev.tag, false);
		}
	}
	s->is_started = false;
}

void streams_free(struct streams *s)
{
	if (!s)
		return;
	grpc_completion_queue_destroy(s->cq);
	free(s);
}
