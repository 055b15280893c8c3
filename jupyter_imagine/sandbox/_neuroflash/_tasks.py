"""neuroflash's generation, edit and upscale task endpoints."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from .. import _art
from ._core import NeuroflashCore
from ._parsing import invalid, read_choice, read_count
from ._wire import derive


class Tasks(NeuroflashCore):
    """The image tasks: generation, edit and upscale."""

    async def generate(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        prompt = self.check_prompt(body)
        model = self.model(body, "text2image")
        count = read_count(body, model)
        ratio = read_choice(body, "aspectRatio", model["aspectRatios"], "1:1")
        fmt = read_choice(body, "outputFormat", model["outputFormats"], "png")
        made, detail = self.take_quota(count)
        self.generations += 1
        generation = str(uuid.uuid4())
        size = _art.aspect_size(ratio, self.side(model))
        parameters = {"aspectRatio": ratio, "outputFormat": fmt, "numImages": count}
        records = [
            self.new_record(
                client_id, ws, generation, prompt=prompt, model=model["id"],
                parameters=dict(parameters), input_image_ids=[], width=size[0],
                height=size[1], fmt=fmt,
                recipe=("render", derive(self.state.seed, prompt, self.generations, i)),
            )
            for i in range(made)
        ]
        await self.create(records)
        noun = "image" if made == 1 else "images"
        description = f"{made} {noun} of {prompt!r} by {model['name']}"
        return self.answer(request, records, generation, description, detail)

    async def edit(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        prompt = self.check_prompt(body)
        ids = body.get("imageIds")
        if not isinstance(ids, list) or not ids:
            raise invalid("imageIds", "imageIds must be a non-empty list of image ids")
        sources = [self.owned(i, client_id, ws, "imageIds") for i in ids]
        model = self.model(body, "image2image")
        count = read_count(body, model)
        ratio = read_choice(body, "aspectRatio", [*model["aspectRatios"], "auto"], "auto")
        fmt = read_choice(body, "outputFormat", model["outputFormats"], "png")
        made, detail = self.take_quota(count)
        self.generations += 1
        generation = str(uuid.uuid4())
        if ratio == "auto":
            size = (sources[0].width, sources[0].height)
        else:
            size = _art.aspect_size(ratio, self.side(model))
        parameters = {"aspectRatio": ratio, "outputFormat": fmt, "numImages": count}
        records = [
            self.new_record(
                client_id, ws, generation, prompt=prompt, model=model["id"],
                parameters=dict(parameters), input_image_ids=[s.id for s in sources],
                width=size[0], height=size[1], fmt=fmt,
                recipe=("edit", derive(self.state.seed, "edit", prompt, self.generations, i),
                        0.35),
            )
            for i in range(made)
        ]
        await self.create(records)
        description = f"{prompt!r} applied to {len(sources)} image(s) by {model['name']}"
        return self.answer(request, records, generation, description, detail)

    async def upscale(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        source = self.owned(body.get("imageId"), client_id, ws, "imageId")
        model = self.model(body, "upscale", required=True)
        factor = body.get("upscaleFactor")
        allowed = model.get("upscaleFactors") or []
        if factor in (None, ""):
            raise invalid("upscaleFactor", "upscaleFactor is required")
        if isinstance(factor, bool) or factor not in allowed:
            raise invalid(
                "upscaleFactor",
                f"upscaleFactor must be one of {', '.join(map(str, allowed))} for {model['id']}",
            )
        fmt = read_choice(body, "outputFormat", model["outputFormats"], source.fmt)
        width, height = source.width * factor, source.height * factor
        if max(width, height) > int(model["longSide"]):
            raise invalid(
                "upscaleFactor",
                f"a {factor}x upscale of a {source.width}x{source.height} image exceeds "
                f"{model['longSide']} px",
            )
        _, detail = self.take_quota(1)
        generation = str(uuid.uuid4())
        record = self.new_record(
            client_id, ws, generation, prompt="", model=model["id"],
            parameters={"upscaleFactor": factor, "outputFormat": fmt},
            input_image_ids=[source.id], width=width, height=height, fmt=fmt,
            recipe=("upscale", source.id, factor),
        )
        await self.create([record])
        description = f"{factor}x upscale by {model['name']}"
        return self.answer(request, [record], generation, description, detail)
