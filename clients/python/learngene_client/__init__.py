"""A Python client for the Learngene service (httpx, synchronous), and the `learngene` command line.

    from learngene_client import Client

    client = Client("http://127.0.0.1:8000", api_key="lgk_...")    # or LEARNGENE_URL, LEARNGENE_API_KEY
    job = client.wait(client.create_task("task1.npz", epochs=10), on_progress=print)
    ind_job = client.wait(client.create_individual("support.npz", eval_file="query.npz"))
    client.predict(ind_job.result["individual_id"], "images.npz").predictions[0].label

Results are this package's own response models (learngene_client/models.py), kept in step with the
service's OpenAPI document; the client needs httpx and pydantic, never the server or torch.
"""
from learngene_client._client import Client
from learngene_client._errors import ApiError, ConnectionFailed, LearngeneError
from learngene_client._events import JobEvent, ServerSentEvent, parse_sse
from learngene_client.models import (
    AliasPublic,
    CollectivePublic,
    IndividualPublic,
    JobProgress,
    JobPublic,
    LearngeneDetail,
    LearngenePublic,
    Page,
    Prediction,
    PredictionsPublic,
    Readiness,
    TaskPublic,
)

__all__ = [
    "AliasPublic", "ApiError", "Client", "CollectivePublic", "ConnectionFailed", "IndividualPublic", "JobEvent",
    "JobProgress", "JobPublic", "LearngeneDetail", "LearngeneError", "LearngenePublic", "Page", "Prediction", "PredictionsPublic",
    "Readiness", "ServerSentEvent", "TaskPublic", "parse_sse",
]
