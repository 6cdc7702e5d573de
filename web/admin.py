"""Admin pages: log in with the admin token, add sources, start harvests, delete sources and
manifests. Every form posts a CSRF token; every action needs an admin session."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from . import auth, catalogue
from .admin_actions import add_source, delete_manifest, delete_source, load_job, load_source, start_harvest
from .database import get_session
from .harvest_jobs import list_jobs

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _csrf_on_posts():
    if request.method == "POST":
        auth.check_csrf()


@bp.get("")
def dashboard():
    if auth.admin_token() is None:
        return render_template("admin_login.html", disabled=True, message=auth.NO_TOKEN_MESSAGE), 403
    if not auth.is_admin():
        return render_template("admin_login.html", disabled=False)
    session = get_session()
    from .resources import encoder_fallback_reason

    config = current_app.config["MSEARCH_CONFIG"]
    return render_template("admin.html", sources=catalogue.sources(session), jobs=list_jobs(config.data_dir),
                           model=config.model, model_problem=encoder_fallback_reason(current_app))


@bp.post("/login")
def login():
    auth.log_in(request.form.get("token", ""))
    return redirect(url_for("admin.dashboard"), code=303)


@bp.post("/logout")
def logout():
    auth.log_out()
    return redirect(url_for("search.index"), code=303)


@bp.post("/sources")
@auth.require_admin
def sources_add():
    source = add_source(get_session(), request.form.get("url", ""))
    flash(f"Source added: {source.url}")
    if request.form.get("harvest"):
        steps = ("harvest", "embed", "index") if request.form.get("embed") else ("harvest",)
        job = start_harvest(get_session(), source, steps)
        flash(f"Harvest started (job {job['id']}).")
    return redirect(url_for("admin.dashboard"), code=303)


@bp.post("/sources/<int:source_id>/harvest")
@auth.require_admin
def sources_harvest(source_id: int):
    session = get_session()
    steps = ("harvest", "embed", "index") if request.form.get("embed") else ("harvest",)
    job = start_harvest(session, load_source(session, source_id), steps)
    flash(f"Harvest started (job {job['id']}).")
    return redirect(url_for("admin.job", job_id=job["id"]), code=303)


@bp.post("/sources/<int:source_id>/delete")
@auth.require_admin
def sources_delete(source_id: int):
    session = get_session()
    source = load_source(session, source_id)
    removed = delete_source(session, source)
    flash(f"Deleted source {source.url} and {removed} manifest(s).")
    return redirect(url_for("admin.dashboard"), code=303)


@bp.post("/manifests/<int:manifest_id>/delete")
@auth.require_admin
def manifests_delete(manifest_id: int):
    url = delete_manifest(get_session(), manifest_id)
    flash(f"Deleted manifest {url}.")
    return redirect(url_for("browse.manifests"), code=303)


@bp.get("/jobs/<job_id>")
@auth.require_admin
def job(job_id: str):
    return render_template("job.html", job=load_job(job_id))
