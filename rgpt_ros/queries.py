"""The query side of the node: refer_query topic and the refer action, both run on the worker.

Each stream has its own: ``<stream>/refer_query`` answered on ``<stream>/refer_result``, and the
action ``<stream>/refer``; a query runs on that stream's latest frame (or the goal's own image).
Every query the node receives ends with a result: answered, refused (queue full, node not
active), failed (with the reason) or canceled. A cancel, a deactivate or a shutdown stops a
running query between decoding steps; goals are ended (aborted or canceled, with a reason)
before the action server goes away, so a waiting client always gets its result.

A referring answer about a stream's latest frame is kept with the regions it was computed on;
the same expression on a later frame gets it back (``reused``) while none of the candidate
regions changed (same ids, each within the reuse thresholds, at most reuse_max_age frames).
"""

from __future__ import annotations

import time

from rclpy.action import GoalResponse
from regiongpt_ros.action import RegionQuery
from regiongpt_ros.msg import ReferQuery, ReferResult

from . import conversions as conv
from .frames import ProcessedFrame
from .jobs import QueryJob
from .parameters import parse_vocabulary
from .streams import Stream

ACTION_TASKS = ("refer", "describe", "classify", "caption", "ask")
QUEUE_FULL = "too many pending queries (max_pending_queries); try again later"
NOT_ACTIVE = "the node is not active; activate it, then ask again"


class QueriesMixin:
    """Query handling of RGPTNode (needs p(), counters, predictor, streams, _worker)."""

    def _init_queries(self) -> None:
        self._accepting = False  # True while active: queries are taken
        self._active_goals = 0

    def _submit(self, job: QueryJob) -> None:
        """Queue a job on the worker, or refuse it at once with the reason."""
        worker = self._worker
        if not self._accepting or worker is None:
            job.refuse(NOT_ACTIVE)
        elif not worker.submit_query(job):
            job.refuse(QUEUE_FULL)

    def cancel_queries(self, reason: str) -> None:
        """Stop the running query and skip the waiting ones (each ends with ``reason``)."""
        worker = self._worker
        for job in worker.queries() if worker is not None else []:
            if isinstance(job, QueryJob):
                job.cancel(reason)

    def goals_running(self) -> bool:
        return self._active_goals > 0

    def wait_goals_ended(self, timeout: float, had_goals: bool = False) -> bool:
        """Wait until no goal is executing and rclpy has set every goal's result, then a
        moment for result requests still queued on the executor: only then may the action
        servers go (destroyed earlier, a result is never sent and the client waits forever).
        ``had_goals``: goals ran when the teardown began (they may have ended since, their
        replies still in DDS's send queue: the grace is for those too).
        """
        end = time.monotonic() + timeout
        had_goals = had_goals or self._active_goals > 0
        while (self._active_goals > 0 or self._results_pending()) and time.monotonic() < end:
            time.sleep(0.02)
        if had_goals:
            time.sleep(0.3)  # replies still queued in DDS, get_result requests on the executor
        return self._active_goals == 0 and not self._results_pending()

    def _results_pending(self) -> bool:
        """Whether rclpy has yet to set a goal's result. After our execute callback returns,
        rclpy's own task sets the result and sends it to a client already waiting; on a
        loaded CPU that thread can be descheduled for longer than any fixed grace period.
        (rclpy keeps these futures privately; without them this reports nothing pending.)"""
        return any(not future.done() for action in getattr(self, "_actions", ())
                   for future in list(getattr(action, "_result_futures", {}).values()))

    # ------------------------------------------------------------------------ frames
    def _query_frame(self, stream: Stream, image_msg, mask_msg) -> ProcessedFrame:
        """The frame a query runs on: its own image+masks, or the stream's latest frame."""
        from rgpt_model.errors import InvalidQueryError
        from rgpt_model.regions import select_regions

        if image_msg is not None and image_msg.width > 0 and image_msg.height > 0:
            if mask_msg is None or mask_msg.width == 0 or mask_msg.height == 0:
                raise InvalidQueryError("the goal carries an image but no masks; send the mask "
                                        "label image with it")
            frame = self.to_frame(image_msg, mask_msg)
            ids = select_regions(frame.labels, min_area=int(self.p("min_region_area")),
                                 max_regions=int(self.p("max_regions")))
            return ProcessedFrame(frame.header, frame.rgb, frame.labels, ids)
        latest = stream.get_latest()
        if latest is None:
            raise InvalidQueryError("no frame processed yet: publish image and masks first, or "
                                    "send the image and masks with the goal")
        return latest

    def refer_latest(self, stream: Stream, encoded, expression: str, max_new_tokens: int,
                     should_stop) -> tuple[object, bool]:
        """(answer, reused) of a referring query on the stream's latest frame: an earlier
        answer to the same query while no candidate region changed, else a new one."""
        reuse = self.reuse_for(stream)
        key = (expression, int(max_new_tokens), tuple(encoded.region_ids))
        cached = stream.cached_answer(key) if reuse is not None else None
        if cached is not None and not reuse.changed_since(cached[0], encoded):
            return cached[1], True
        answer = self.predictor.refer(encoded, expression, max_new_tokens=max_new_tokens,
                                      should_stop=should_stop)
        if reuse is not None:
            stream.remember_answer(key, reuse.snapshot(encoded), answer)
        return answer, False

    # ------------------------------------------------------------------------- topic
    def _on_refer_query(self, stream: Stream, msg: ReferQuery) -> None:
        """Topic query: answered on the stream's refer_result, always (an error result on
        failure)."""
        self.counters.add(queries_received=1)

        def run(job: QueryJob) -> ReferResult:
            frame = self._query_frame(stream, None, None)
            answer, reused = self.refer_latest(
                stream, self.encoded_for(frame, None), msg.expression,
                int(self.p("max_new_tokens")), job.should_stop)
            out = ReferResult(query_id=msg.query_id, expression=msg.expression,
                              header=frame.header, success=True, reused=reused)
            conv.fill_refer_answer(out, answer)
            return out

        def finish(job: QueryJob) -> None:
            out = job.result
            if out is None:
                out = ReferResult(query_id=msg.query_id, expression=msg.expression,
                                  success=False, error=job.error or "query not run")
                self.counters.add(queries_failed=1)
                self.get_logger().warning(f"query {msg.query_id!r} failed: {out.error}")
            else:
                self.counters.add(queries_answered=1)
            pub = stream.pubs.get("refer_result")
            if pub is not None:
                pub.publish(out)

        self._submit(QueryJob(run, finish))

    # ------------------------------------------------------------------------ action
    def _on_goal(self, goal: RegionQuery.Goal) -> GoalResponse:
        with self._goal_lock:
            if not self._accepting or self._active_goals >= int(self.p("max_pending_queries")):
                self.get_logger().warning("refer goal rejected: node busy or not active")
                return GoalResponse.REJECT
            self._active_goals += 1
        return GoalResponse.ACCEPT

    def _execute_goal(self, stream: Stream, goal_handle) -> RegionQuery.Result:
        """Action: queue the query on the worker, wait for it, honour cancel."""
        try:
            return self._serve_goal(stream, goal_handle)
        finally:
            with self._goal_lock:
                self._active_goals -= 1

    def _serve_goal(self, stream: Stream, goal_handle) -> RegionQuery.Result:
        goal: RegionQuery.Goal = goal_handle.request
        self.counters.add(queries_received=1)

        def feedback(stage: str, done: int = 0, total: int = 0, partial: str = "") -> None:
            goal_handle.publish_feedback(RegionQuery.Feedback(
                stage=stage, done=done, total=total, partial_answer=partial))

        job = QueryJob(lambda job: self._run_goal(stream, goal, feedback, job.should_stop))
        feedback("waiting")
        self._submit(job)
        while not job.done.wait(0.05):
            if goal_handle.is_cancel_requested and not job.cancelled.is_set():
                job.cancel("canceled")
        if goal_handle.is_cancel_requested:
            job.result, job.error = None, "canceled"
        if job.result is not None:
            self.counters.add(queries_answered=1)
            goal_handle.succeed()
            return job.result
        result = RegionQuery.Result(query_id=goal.query_id, success=False,
                                    error=job.error or "query not run")
        self.counters.add(queries_failed=1)
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            self.get_logger().warning(f"goal {goal.query_id!r} failed: {result.error}")
            goal_handle.abort()
        return result

    def _run_goal(self, stream: Stream, goal: RegionQuery.Goal, feedback,
                  should_stop) -> RegionQuery.Result:
        """Worker: one action goal on its own frame or the stream's latest one."""
        from rgpt_model.errors import InvalidQueryError
        from rgpt_model.regions import check_region_count

        task = goal.task.strip() or "refer"
        if task not in ACTION_TASKS:
            raise InvalidQueryError(f"unknown task {task!r}; use one of {ACTION_TASKS}")
        ids = [int(i) for i in goal.region_ids]
        check_region_count(ids, int(self.p("max_regions")))
        frame = self._query_frame(stream, goal.image, goal.masks)
        encoded = self.encoded_for(frame, ids)
        total = len(encoded.region_ids)
        tokens = int(goal.max_new_tokens) or int(self.p("max_new_tokens"))
        options = {"max_new_tokens": tokens, "should_stop": should_stop}
        feedback("generating", 0, total)
        out = RegionQuery.Result(query_id=goal.query_id, header=frame.header, success=True)
        if task == "refer" and frame is stream.get_latest():
            answer, out.reused = self.refer_latest(stream, encoded, goal.expression, tokens,
                                                   should_stop)
            conv.fill_refer_answer(out, answer)
        elif task == "refer":
            conv.fill_refer_answer(out, self.predictor.refer(encoded, goal.expression, **options))
        elif task == "ask":
            out.answer = self.predictor.ask(encoded, goal.expression, **options)
        else:
            tasks = ["classify", "caption"] if task == "describe" else [task]
            descs = self.predictor.describe(
                encoded, tasks=tasks, vocabulary=parse_vocabulary(self.p("vocabulary")),
                **options)
            out.regions = [conv.region_description_msg(d) for d in descs]
        feedback("done", total, total, out.answer)
        return out
